package identity

import (
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
)

// memory is what the identity controller keeps in this process. Every entry saves requests or
// writes, never correctness: a process that starts with it empty (a restart, a new leader)
// reaches the same status and the same accounts, at the cost named beside each map (the
// restart specs of internal/controller prove it). Every entry of an identity goes when the
// identity is seen gone, however it went (known); Remembered counts them.
type memory struct {
	// verified: verifiedKey (identity UID|target) -> time.Time the account was last confirmed.
	// Empty: one GET per account at its next resync.
	verified sync.Map
	// resyncRequests: identity UID -> the resync annotation value last acted on. Empty: one
	// extra check per annotated identity.
	resyncRequests sync.Map
	// withdrawn: verifiedKey -> struct{} for the targets refusing an identity's namespace on
	// which its accounts were already looked up and deprovisioned. Empty: one lookup more.
	withdrawn sync.Map
	// retired: identity UID -> retirement, the deletions of its workload the watch delivered.
	// Empty: the owner is looked up (workloads.Gone) instead of known at once.
	retired sync.Map
	// known: identity name -> identityKeys, the keys of the entries above for that identity.
	known sync.Map
	// guarded is whether the creation stamps were last found guarded (stampguard). Empty: not
	// guarded until the policies' informers say they are.
	guarded atomic.Bool
}

// retirement is what the watch saw of an identity's workload: its deletion (the workload's UID),
// then, once an ownerReference or status.workload confirmed that workload was the identity's
// owner, why the identity is retired.
type retirement struct {
	workload types.UID
	why      string
}

func (r retirement) confirmed() bool { return r.why != "" }
