package target

import "sync"

// memory is what the target controllers keep in this process. Every entry saves requests or
// writes, never correctness: a process that starts with it empty (a restart, a new leader)
// reaches the same status, at the cost named beside each map. Every entry of a target goes when
// the target is seen gone (forget).
type memory struct {
	// probed: target key -> the credentials version of the last successful probe. Empty: each
	// Ready target is probed once more.
	probed sync.Map
	// sweeps: target key -> sweepMemo, the last sweep of the target with the UID it records.
	// It stands in for a status write still on its way (or lost to a conflict). Empty:
	// status.sweep decides.
	sweeps sync.Map
	// runs are the sweeps in progress, so a target's deletion can stop its sweep. Empty (no
	// sweep running in a new process): nothing to stop.
	runs sweepRuns
	// snapshotted: target key and UID -> the credentials version and generation snapshotted.
	// Empty: each Ready target's credential snapshot is written once more.
	snapshotted sync.Map
}
