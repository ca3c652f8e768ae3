#!/usr/bin/env bash
# Uses a packed seqload the way a user gets it: installs TARBALL into a scratch project outside the
# repository (so nothing resolves to the repository's node_modules) and, with whatever `node` comes
# first on PATH,
#   - imports "seqload" as ESM and runs the README's 30-second tour, checking what it prints;
#   - runs `npx seqload --version`, `npx seqload validate` and `npx seqload load` on the examples
#     the package ships, and checks the loaded rows;
#   - type-checks a consumer .ts under "module": "nodenext" with skipLibCheck false, so the
#     published .d.ts files (and the type packages they name) resolve.
# ADMIN_URL must be a PostgreSQL role that may CREATE DATABASE: the check uses a database of its own
# and drops it afterwards.
#
#   bash .ci/package-check.sh seqload-0.1.0.tgz postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 TARBALL ADMIN_DATABASE_URL" >&2
  exit 64
fi
tgz=$(realpath "$1")
admin_url=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_version=$(node --version)
say() { echo "[package check, node $node_version] $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/seqload-package-check.XXXXXX")
db=""
cleanup() {
  if [ -n "$db" ]; then (cd "$work" && node db.mjs drop "$admin_url" "$db") || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

cat > package.json << 'EOF'
{ "name": "seqload-package-check", "version": "1.0.0", "private": true, "type": "module" }
EOF
# The type packages a consumer has anyway (Node's), at the version the repository uses.
types_node=$(node -p "require('$repo/node_modules/@types/node/package.json').version")
say "npm install $(basename "$tgz") @types/node@$types_node in $work"
npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tgz" "@types/node@$types_node" < /dev/null
installed=$(node -p "require('./node_modules/seqload/package.json').version")
[ -f node_modules/seqload/dist/src/index.js ] || { say "FAIL: the installed package has no dist/src/index.js"; exit 1; }

# A database of its own: `pg` here is the one seqload's package brought along.
cat > db.mjs << 'EOF'
import pg from "pg";
const [action, adminUrl, name] = process.argv.slice(2);
const client = new pg.Client({ connectionString: adminUrl });
await client.connect();
try {
  if (action === "create") {
    await client.query(`CREATE DATABASE "${name}"`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    console.log(url.toString());
  } else {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
} finally {
  await client.end();
}
EOF
name="seqload_package_check_$$_$RANDOM"
url=$(node db.mjs create "$admin_url" "$name")
db=$name

# 1. The README's 30-second tour, as written, against a fresh database.
node -e '
  const readme = require("fs").readFileSync("node_modules/seqload/README.md", "utf8");
  const tour = readme.slice(readme.indexOf("## A 30-second tour"));
  const code = /```ts\n([\s\S]*?)```/.exec(tour)?.[1];
  if (!code || !code.includes("from \"seqload\"")) throw new Error("no tour in the packed README");
  require("fs").writeFileSync("tour.mjs", code);
  require("fs").writeFileSync("tour.expected", /\/\/ (\{ table: .*\})/.exec(code)[1]);
'
say "node tour.mjs (the README's 30-second tour, import from \"seqload\")"
printed=$(DATABASE_URL=$url node tour.mjs | tr -s ' \n' ' ' | sed 's/ $//')
expected=$(cat tour.expected)
echo "$printed"
if [ "$printed" != "$expected" ]; then
  say "FAIL: the tour printed something else than the README says: $expected"
  exit 1
fi

# 2. The CLI through npx, as the README shows it.
say "npx seqload --version"
version=$(npx --no -- seqload --version < /dev/null)
echo "$version"
[ "$version" = "$installed" ] || { say "FAIL: --version says $version, the package is $installed"; exit 1; }

say "npx seqload validate node_modules/seqload/examples/customers.json"
npx --no -- seqload validate node_modules/seqload/examples/customers.json < /dev/null

say "npx seqload load node_modules/seqload/examples/orders.jsonl"
npx --no -- seqload load --database-url "$url" node_modules/seqload/examples/orders.jsonl < /dev/null
rows=$(npx --no -- seqload query --database-url "$url" --json \
  "select count(*)::int as n, count(_deleted_at)::int as deleted from orders" < /dev/null)
echo "$rows"
[ "$rows" = '{"n":4,"deleted":1}' ] || { say "FAIL: orders holds $rows, expected 4 rows, 1 of them deleted"; exit 1; }

# 3. The published types, checked strictly by a consumer.
cat > tsconfig.json << 'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "strict": true,
    "skipLibCheck": false,
    "noEmit": true,
    "types": ["node"]
  },
  "files": ["consumer.ts"]
}
EOF
cat > consumer.ts << 'EOF'
import {
  type Batch,
  BatchValidationError,
  type LoadResult,
  type LoaderOptions,
  SeqloadError,
  createLoader,
  migrationStatus,
  validateBatch,
} from "seqload";

const options: LoaderOptions = { connectionString: process.env.DATABASE_URL, schema: "public", copyThreshold: 1000 };
const batch: Batch = {
  table_name: "customers",
  key_names: ["id"],
  schema: { properties: { id: { type: "integer" }, name: { type: "string" } } },
  messages: [{ action: "upsert", sequence: 1n, data: { id: 1, name: "Finn" } }],
};

export async function main(): Promise<number> {
  validateBatch(batch);
  const loader = await createLoader(options);
  try {
    const result: LoadResult = await loader.loadBatch(batch);
    const status = await migrationStatus(loader.pool);
    return result.inserted + status.pending.length;
  } catch (e) {
    if (e instanceof BatchValidationError) return e.issues.length;
    if (e instanceof SeqloadError) return e.retryable ? 1 : 0;
    throw e;
  } finally {
    await loader.close();
  }
}
EOF
say "tsc (module nodenext, skipLibCheck false) on a consumer of the published types"
node "$repo/node_modules/typescript/bin/tsc" -p tsconfig.json

say "OK: seqload $installed installed from $(basename "$tgz") and used on node $node_version"
