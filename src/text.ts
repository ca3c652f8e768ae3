/** Shortening text quoted in messages: a huge name or value must not make a huge message. */

/** `text` cut to `max` characters, with "…" when cut. */
export function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
