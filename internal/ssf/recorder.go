package ssf

import (
	"context"
	"sort"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// MaxStreamsPerRevocation bounds the streams one revocation's tokens are recorded for (the
// evidence's streams list holds at most 16 entries, one per stream and event type): half for
// the cluster's streams, half for the namespace's, so neither can crowd the other out.
const MaxStreamsPerRevocation = 16

// ReasonBacklogged is the Ready reason of a stream that holds MaxPending tokens: no more are
// recorded for it until its receiver takes some.
const ReasonBacklogged = "Backlogged"

// Recorder names the streams that record a revocation's tokens, from the cache: the streams of
// the operator's namespace and those of the identity's namespace, that are not disabled, not
// being deleted and not backlogged, each for the event types it is delivered.
type Recorder struct {
	Reader            client.Reader
	OperatorNamespace string
}

// Marks are the Pending entries for a revocation confirmed with result in namespace, on a
// target of kind.
func (r *Recorder) Marks(ctx context.Context, namespace, kind string, result scimv1.RevocationResult) []scimv1.StreamEvent {
	var out []scimv1.StreamEvent
	for _, ns := range []string{r.OperatorNamespace, namespace} {
		var list scimv1.SecurityEventStreamList
		if err := r.Reader.List(ctx, &list, client.InNamespace(ns)); err != nil {
			logf.FromContext(ctx).Error(err, "Listing the Shared Signals streams; the revocation's tokens are not recorded for them", "namespace", ns)
			continue
		}
		cluster := ns == r.OperatorNamespace
		out = append(out, marksOf(ctx, list.Items, cluster && kind != scimv1.KindClusterScimTarget, result)...)
		if ns == namespace {
			break
		}
	}
	return out
}

// marksOf are the marks of one scope's streams, oldest first, at most half the bound. riscOnly
// leaves out the SCIM events (RFC 9967), whose subject is a path on the target (/Users/<id>)
// and does not name the target: on the cluster's streams a tenant's own SCIM server could
// otherwise make a token that reads as the deletion of an account elsewhere.
func marksOf(ctx context.Context, streams []scimv1.SecurityEventStream, riscOnly bool, result scimv1.RevocationResult) []scimv1.StreamEvent {
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
			if riscOnly && strings.HasPrefix(ev, scimEventPrefix) {
				continue
			}
			if len(out) == MaxStreamsPerRevocation/2 {
				logf.FromContext(ctx).Info("More Shared Signals streams in a namespace than a revocation records; the newest are left out",
					"namespace", st.Namespace, "bound", MaxStreamsPerRevocation/2)
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
	if !st.DeletionTimestamp.IsZero() || StateOf(st) == scimv1.StreamDisabled {
		return false
	}
	c := apimeta.FindStatusCondition(st.Status.Conditions, "Ready")
	return c == nil || c.Reason != ReasonBacklogged
}
