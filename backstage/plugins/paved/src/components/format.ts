// Display helpers: how paved's numbers and times read on a card. Formatting only.

export function money(amount: number | null | undefined, currency = 'USD'): string {
  if (amount === null || amount === undefined) return '—';
  return new Intl.NumberFormat('en-US', { style: 'currency', currency }).format(amount);
}

/** An RFC 3339 time as paved wrote it, in UTC, to the minute (the same for every viewer). */
export function when(iso: string | null | undefined): string {
  if (!iso) return 'never';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
