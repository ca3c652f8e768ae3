/**
 * Answering before the request body has arrived (401, 413, 415, 503) needs care at the socket.
 * Left alone, Node either reads the whole upload to keep the connection alive (a 2 GB body would
 * be read to the end, discarded but paid for) or, with `connection: close`, closes the socket at
 * once; closing with unread bytes makes the kernel send RST, and most clients then report
 * "connection reset" instead of our answer. So: half-close, discard what is still coming for a
 * moment (what nginx calls a lingering close), then cut the connection.
 */
import type { Socket } from "node:net";

/** How long the rest of an unwanted upload is read and discarded after the answer. */
const LINGER_MS = 1000;

/** Make Node's end-of-response close of this socket a lingering one. */
export function lingerOnClose(socket: Socket): void {
  // Node's HTTP server calls socket.destroySoon() after a `connection: close` response (and
  // checks that the method exists, so an own property is a supported override). The HTTP server's
  // sockets allow half-open connections: after end() the parser keeps reading and dropping bytes.
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
}
