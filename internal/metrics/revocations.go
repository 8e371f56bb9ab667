package metrics

import (
	"sync"
	"time"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"

	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// RevocationClock remembers when deletions were first seen, for the revocation histogram:
// identities by UID, workloads by namespace/kind/name (their identities are deleted by the
// garbage collector a moment later).
type RevocationClock struct {
	clock clock.PassiveClock
	// latency is the histogram Done records into.
	latency prometheus.Histogram
	// seen is bounded: a tenant that deletes workloads no identity ever belonged to cannot
	// grow it; an entry evicted only costs one histogram sample its precise start.
	seen *lru.Cache
	mu   sync.Mutex // makes the first mark count
}

// RevocationClockSize bounds the deletions remembered for the histogram.
const RevocationClockSize = 100_000

func newRevocationClock(c clock.PassiveClock, latency prometheus.Histogram) *RevocationClock {
	return &RevocationClock{clock: status.Clock(c), latency: latency, seen: lru.New(RevocationClockSize)}
}

func WorkloadKey(namespace, kind, name string) string { return namespace + "/" + kind + "/" + name }

// mark notes that the deletion of key was seen now (the first time counts).
func (c *RevocationClock) Mark(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen.Get(key); !ok {
		c.seen.Add(key, c.clock.Now())
	}
}

// start is the earliest recorded deletion for the identity or the workloads that own it.
func (c *RevocationClock) start(si *scimv1.ServiceIdentity) time.Time {
	var start time.Time
	if si.DeletionTimestamp != nil {
		start = si.DeletionTimestamp.Time
	}
	consider := func(key string) {
		if v, ok := c.seen.Get(key); ok {
			if at := v.(time.Time); start.IsZero() || at.Before(start) {
				start = at
			}
		}
	}
	if v, ok := c.seen.Get(string(si.UID)); ok {
		// The watch event is more precise than deletionTimestamp (whole seconds).
		start = v.(time.Time)
	}
	for _, o := range si.OwnerReferences {
		consider(WorkloadKey(si.Namespace, o.Kind, o.Name))
	}
	return start
}

// Done records the revocation of si as complete: the histogram gets the time since the
// earliest deletion seen (of si or of a workload that owned it), and si is forgotten.
func (c *RevocationClock) Done(si *scimv1.ServiceIdentity) {
	if start := c.start(si); !start.IsZero() {
		c.latency.Observe(c.clock.Since(start).Seconds())
	}
	c.Forget(si)
}

// Forget drops what the clock remembers of si and its workloads.
func (c *RevocationClock) Forget(si *scimv1.ServiceIdentity) {
	c.seen.Remove(string(si.UID))
	for _, o := range si.OwnerReferences {
		c.seen.Remove(WorkloadKey(si.Namespace, o.Kind, o.Name))
	}
}
