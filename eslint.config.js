// `npm run lint` runs this after prettier and tsc: typescript-eslint's recommended rules plus its
// type-aware ones (recommendedTypeChecked: floating and misused promises, unsafe `any`, needless
// assertions, …) over src/, test/ and bench/, and a few SonarJS rules for copy-paste mistakes
// (branches or conditions identical to their neighbours, collections written and never read).
// Type information comes from tsconfig.json.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import sonarjs from "eslint-plugin-sonarjs";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/", "coverage/", "node_modules/", ".seqload/", "scratch/"] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: {
        projectService: { allowDefaultProject: ["vitest.config.ts"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // `_`-prefixed names are deliberately unused (e.g. the fields a rest pattern leaves out).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", ignoreRestSiblings: true }],
      // Off: an async function without await is how this code turns a synchronous throw into a
      // rejection (createLoader) and fits callbacks typed () => Promise<T>. The promise rules that
      // catch real mistakes (no-floating-promises, no-misused-promises, await-thenable) stay on.
      "@typescript-eslint/require-await": "off",
    },
  },
  {
    // Not sonarjs's "recommended" (hundreds of style rules): only those that point at a likely bug.
    plugins: { sonarjs },
    rules: {
      "sonarjs/no-all-duplicated-branches": "error",
      "sonarjs/no-duplicated-branches": "error",
      "sonarjs/no-identical-conditions": "error",
      "sonarjs/no-identical-expressions": "error",
      "sonarjs/no-element-overwrite": "error",
      "sonarjs/no-gratuitous-expressions": "error",
      "sonarjs/no-redundant-jump": "error",
      "sonarjs/no-unused-collection": "error",
      "sonarjs/no-use-of-empty-return-value": "error",
      "sonarjs/non-existent-operator": "error",
    },
  },
  {
    // Vitest's asymmetric matchers (expect.stringMatching, expect.any, …) are typed `any`, and so are
    // the rows of an untyped pg query that a test compares with toEqual: the unsafe-`any` rules would
    // flag every such assertion. The library and the benchmarks keep them.
    files: ["test/**"],
    rules: {
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-call": "off",
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
