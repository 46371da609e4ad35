/** A `/ws` event of Smelter that bears on whether an output has ended. */
export type OutputEvent =
  { type: 'OUTPUT_DONE'; output_id: string } | { type: 'OUTPUT_ERROR'; output_id: string; severity: string };

type OutputFate = 'live' | 'done' | 'failed' | 'unregistered';

/**
 * Tells when a composition is over, from what Smelter shows: every output it has had ended
 * (OUTPUT_DONE, or OUTPUT_ERROR with severity critical) or was unregistered. Smelter's warts
 * (FACTS.md): an ended output stays listed in `/status`, and a WHEP server output never sends
 * OUTPUT_DONE (it ends only when unregistered). A composition with no output yet is not over, and the
 * condition must hold for `settleMs`, so swapping one output for another is not mistaken for the end.
 */
export class CompositionWatch {
  private readonly outputs = new Map<string, OutputFate>();
  private overSince: number | undefined;

  constructor(
    readonly compositionId: string,
    private readonly settleMs: number,
  ) {}

  /** The output ids `GET /status` lists now. */
  observeOutputs(listed: readonly string[], now: number): void {
    const present = new Set(listed);
    for (const id of present) {
      const fate = this.outputs.get(id);
      // Re-registered after it was unregistered: a new output under the old id.
      if (fate === undefined || fate === 'unregistered') this.outputs.set(id, 'live');
    }
    for (const [id, fate] of this.outputs)
      if (!present.has(id) && fate !== 'unregistered') this.outputs.set(id, 'unregistered');
    this.update(now);
  }

  observeEvent(event: OutputEvent, now: number): void {
    if (event.type === 'OUTPUT_DONE') this.outputs.set(event.output_id, 'done');
    else if (event.severity === 'critical') this.outputs.set(event.output_id, 'failed');
    this.update(now);
  }

  /** Why the composition is over, or undefined while it runs. */
  finished(now: number): string | undefined {
    if (this.overSince === undefined || now - this.overSince < this.settleMs) return undefined;
    const parts = [...this.outputs].map(
      ([id, fate]) => `${id} ${fate === 'failed' ? 'failed (critical error)' : fate}`,
    );
    return `every output ended: ${parts.join(', ')}`;
  }

  /** The outputs seen and how each stands, e.g. `a live, b done`. */
  describe(): string {
    return [...this.outputs]
      .map(([id, fate]) => `${id} ${fate === 'failed' ? 'failed (critical error)' : fate}`)
      .join(', ');
  }

  /** When `finished` will next change its answer if nothing else happens, or undefined. */
  settlesAt(): number | undefined {
    return this.overSince === undefined ? undefined : this.overSince + this.settleMs;
  }

  private update(now: number): void {
    const over = this.outputs.size > 0 && [...this.outputs.values()].every((f) => f !== 'live');
    if (!over) this.overSince = undefined;
    else this.overSince ??= now;
  }
}
