import type { ComponentChildren } from 'preact';

/**
 * A wide table's scroll box for narrow screens: focusable and named, so a keyboard user can
 * scroll it too (axe: scrollable-region-focusable).
 */
export function TableWrap({ label, labelledBy, children }: { label?: string; labelledBy?: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap scroll-box" role="region" aria-label={label} aria-labelledby={labelledBy} tabIndex={0}>
      {children}
    </div>
  );
}
