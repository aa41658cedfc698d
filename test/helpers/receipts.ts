import type { Api } from '../../src/core/http-client.ts';
import type { ReceiptsAnswer, SignedReceipt } from '../../src/transfer/receipt.ts';

/**
 * Hands receipts in as a receiver does (#10 point 6): one refused with
 * `receipt_not_served` (its source's report is on its way, within a moment) is sent
 * again, a bounded number of times. Returns the last answer, plus everything accepted.
 */
export async function submitReceipts(api: Api, receipts: SignedReceipt[], attempts = 40): Promise<ReceiptsAnswer> {
  const all: ReceiptsAnswer = { accepted: [], duplicates: [], refused: [] };
  let pending = receipts;
  for (let i = 0; i < attempts && pending.length; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    const res = await api.post<ReceiptsAnswer>('/receipts', { receipts: pending });
    all.accepted.push(...res.accepted);
    all.duplicates.push(...res.duplicates);
    const waiting = new Set(res.refused.filter((r) => r.code === 'receipt_not_served').map((r) => r.index));
    all.refused = res.refused.filter((r) => r.code !== 'receipt_not_served');
    pending = pending.filter((_, k) => waiting.has(k));
    if (i === attempts - 1) all.refused.push(...res.refused.filter((r) => r.code === 'receipt_not_served'));
  }
  return all;
}
