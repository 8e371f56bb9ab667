package ssf

import (
	"context"
	"sort"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// MaxStreamsPerRevocation bounds the streams one revocation's tokens are recorded for (the
// evidence's streams list holds at most 16 entries, one per stream and event type).
const MaxStreamsPerRevocation = 16

// ReasonBacklogged is the Ready reason of a stream that holds MaxPending tokens: no more are
// recorded for it until its receiver takes some.
const ReasonBacklogged = "Backlogged"

// Recorder names the streams that record a revocation's tokens, from the cache: the streams of
// the identity's namespace and those of the operator's namespace, that are not disabled, not
// being deleted and not backlogged, each for the event types it is delivered.
type Recorder struct {
	Reader            client.Reader
	OperatorNamespace string
}

// Marks are the Pending entries for a revocation confirmed with result in namespace.
func (r *Recorder) Marks(ctx context.Context, namespace string, result scimv1.RevocationResult) []scimv1.StreamEvent {
	var streams []scimv1.SecurityEventStream
	for _, ns := range []string{r.OperatorNamespace, namespace} {
		var list scimv1.SecurityEventStreamList
		if err := r.Reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
			logf.FromContext(ctx).Error(err, "Listing the Shared Signals streams; the revocation's tokens are not recorded for them")
			continue
		}
		streams = append(streams, list.Items...)
		if ns == namespace {
			break
		}
	}
	// Oldest first: when more than the bound ask, the streams created first keep theirs.
	sort.SliceStable(streams, func(i, j int) bool {
		return streams[i].CreationTimestamp.Before(&streams[j].CreationTimestamp)
	})
	var out []scimv1.StreamEvent
	for i := range streams {
		st := &streams[i]
		if !Records(st) {
			continue
		}
		for _, ev := range Events(result, Delivered(st.Spec.EventsRequested)) {
			if len(out) == MaxStreamsPerRevocation {
				logf.FromContext(ctx).Info("More Shared Signals streams than a revocation records; the newest are left out",
					"namespace", namespace, "bound", MaxStreamsPerRevocation)
				return out
			}
			out = append(out, scimv1.StreamEvent{Stream: StreamKey(st), UID: string(st.UID), Event: ev,
				Delivery: scimv1.SecurityEventPending})
		}
	}
	return out
}

// Records reports whether tokens are recorded for st: it is not disabled, not being deleted
// and not backlogged.
func Records(st *scimv1.SecurityEventStream) bool {
	if !st.DeletionTimestamp.IsZero() || stateOf(st) == scimv1.StreamDisabled {
		return false
	}
	c := apimeta.FindStatusCondition(st.Status.Conditions, "Ready")
	return c == nil || c.Reason != ReasonBacklogged
}
