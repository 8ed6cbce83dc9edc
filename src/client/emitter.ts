// A minimal typed event emitter: the SDK must run in browsers, where `node:events` does not exist.
// Like Node's, an 'error' with no listener is thrown, so a rejected message is never silently lost.

type Listener = (...args: never[]) => void;
export type EventMap = { [event: string]: Listener };

export class TypedEmitter<E extends EventMap> {
  private readonly listeners = new Map<keyof E, Listener[]>();

  on<K extends keyof E>(event: K, listener: E[K]): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }

  once<K extends keyof E>(event: K, listener: E[K]): this {
    const wrapped = ((...args: unknown[]) => {
      this.off(event, wrapped);
      (listener as unknown as (...a: unknown[]) => void)(...args);
    }) as unknown as E[K];
    return this.on(event, wrapped);
  }

  off<K extends keyof E>(event: K, listener: E[K]): this {
    const list = this.listeners.get(event);
    if (list) this.listeners.set(event, list.filter((l) => l !== listener));
    return this;
  }

  removeAllListeners(event?: keyof E): this {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
    return this;
  }

  listenerCount(event: keyof E): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): boolean {
    const list = this.listeners.get(event);
    if (!list || list.length === 0) {
      if (event === 'error') throw args[0];
      return false;
    }
    for (const l of list) (l as (...a: unknown[]) => void)(...args);
    return true;
  }
}
