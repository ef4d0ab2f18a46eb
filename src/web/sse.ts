// Server-Sent Events to the dashboards open now: a bounded set of clients (a page left open in
// many tabs, or a flood, must not grow without end), a comment line as heartbeat so proxies and
// the page notice a dead stream, and a client that does not drain is dropped, not buffered.
import type { ServerResponse } from 'node:http';

export const MAX_SSE_CLIENTS = 8;
export const HEARTBEAT_MS = 15_000;
/** Bytes queued to one client before it counts as stuck and is dropped. */
const MAX_BUFFERED = 1 << 20;

export class SseHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: { max?: number; heartbeatMs?: number; onCount?: (n: number) => void } = {}) {
    this.timer = setInterval(() => this.write(': ping\n\n'), o.heartbeatMs ?? HEARTBEAT_MS);
    this.timer.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts the stream on `res` (headers given), or returns false when the hub is full. */
  add(res: ServerResponse, headers: Record<string, string>): boolean {
    if (this.clients.size >= (this.o.max ?? MAX_SSE_CLIENTS)) return false;
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    res.write(': hello\nretry: 2000\n\n');
    this.clients.add(res);
    // The stream outlives the server's request timeout on purpose.
    res.req.socket.setTimeout(0);
    res.on('close', () => {
      this.clients.delete(res);
      this.o.onCount?.(this.clients.size);
    });
    this.o.onCount?.(this.clients.size);
    return true;
  }

  /** One event to every client; `data` is JSON, so it never holds a newline that could end the event. */
  send(event: string, data: unknown, only?: ServerResponse): void {
    this.sendJson(event, JSON.stringify(data), only);
  }

  sendJson(event: string, json: string, only?: ServerResponse): void {
    const frame = `event: ${event}\ndata: ${json}\n\n`;
    if (only) this.writeTo(only, frame);
    else this.write(frame);
  }

  private write(frame: string): void {
    for (const c of this.clients) this.writeTo(c, frame);
  }

  private writeTo(c: ServerResponse, frame: string): void {
    if (c.writableLength > MAX_BUFFERED) {
      c.destroy();
      return;
    }
    c.write(frame);
  }

  close(): void {
    clearInterval(this.timer);
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}
