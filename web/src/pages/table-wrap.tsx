import type { ComponentChildren } from 'preact';

/**
 * A wide table's scroll box for narrow screens: focusable and named, so a keyboard user can
 * scroll it too (axe: scrollable-region-focusable).
 */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap scroll-box" role="region" aria-label={label} tabIndex={0}>
      {children}
    </div>
  );
}
