// Reserves the first free TCP port from a start port upward, keeping the listener so the port
// stays ours (the swarm takes the server over).
import { createServer, Server } from 'node:net';

export async function listenFirstFree(start: number, host = '0.0.0.0', tries = 200): Promise<{ server: Server; port: number }> {
  for (let port = start; port < Math.min(65536, start + tries); port++) {
    // Only holds the port: a peer that connects meanwhile (a member's swarm finding us back) is
    // cut off at once, or close() would wait for it and the node's start with it (seen: a
    // restarted node never became ready).
    const server = createServer((s) => s.destroy());
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen({ port, host, exclusive: true }, () => resolve(true));
    });
    if (ok) return { server, port };
    server.close();
  }
  throw new Error(`no free TCP port in ${start}..${Math.min(65535, start + tries - 1)}`);
}
