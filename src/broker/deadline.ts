/** A timer for deadlines beyond setTimeout's 24.8-day limit (session expiry may be 136 years). */
const MAX_DELAY = 2 ** 31 - 1;

export class Deadline {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly at: number, private readonly fire: () => void) {
    this.arm();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    const left = this.at - Date.now();
    if (left <= MAX_DELAY) {
      this.timer = setTimeout(this.fire, Math.max(0, left));
      return;
    }
    this.timer = setTimeout(() => this.arm(), MAX_DELAY);
    this.timer.unref();
  }
}
