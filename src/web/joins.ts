// Pending LAN joins as the dashboard sees them: the shape of cluster/join-requests.ts's
// JoinRequests, declared here (structurally identical) so the web layer takes any object of it
// and imports nothing from the cluster.
export interface PendingJoin { code: string; nodeId: string; hostname: string; address: string; since: number; expires: number }

export interface JoinSource {
  list(): PendingJoin[];
  approve(code: string): Promise<{ nodeId: string }>;
  refuse(code: string): void;
  /** Calls fn whenever the list changed; returns what stops that. */
  onChange(fn: () => void): () => void;
}

/** A join's code in a URL: short and plain, so it never needs escaping anywhere. */
export const JOIN_CODE_RE = /^[A-Za-z0-9_-]{1,64}$/;
