// One sd_notify(3) datagram from the small native module src/native/sdnotify.c (Node has no
// unix datagram sockets).
import { createRequire } from 'node:module';

export interface SdNotifyModule {
  /** 0, or -errno. `address`: an absolute path or "@name" (Linux's abstract namespace). */
  notify(address: string, message: string): number;
}

let mod: SdNotifyModule | null = null;

export function loadSdNotify(): SdNotifyModule {
  if (!mod) mod = createRequire(import.meta.url)('../../build/Release/sdnotify.node') as SdNotifyModule;
  return mod;
}
