import { createServer } from 'node:net';

/** Asks the OS for a free TCP port on `host`. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/** Hands out free ports, never the same one twice while it is held. */
export class PortPool {
  private readonly held = new Set<number>();
  constructor(private readonly host: string) {}

  async take(count: number): Promise<number[]> {
    const ports: number[] = [];
    while (ports.length < count) {
      const port = await freePort(this.host);
      if (this.held.has(port)) continue;
      this.held.add(port);
      ports.push(port);
    }
    return ports;
  }

  give(ports: Iterable<number>): void {
    for (const p of ports) this.held.delete(p);
  }
}
