// Package status holds how controllers write status: conditions, the patches that keep
// concurrent writers apart, and messages made safe to show.
package status

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/utils/clock"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

// Set sets a condition; lastTransitionTime only moves when the status changes.
func Set(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: Truncate(message, 1024), ObservedGeneration: generation,
	})
}

// LockedPatch is a merge patch that fails on a stale base (409, retried by the controller).
// Lists such as finalizers and ownerReferences are replaced whole by a merge patch, so a stale
// copy would drop entries others added meanwhile (the garbage collector's foregroundDeletion,
// another controller's finalizer on a shared Secret).
func LockedPatch(base client.Object) client.Patch {
	return client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
}

// FinalizersPatch changes metadata.finalizers with a JSON patch that first tests the list is
// still what we read: it fails only if someone changed the finalizers meanwhile, not on every
// resourceVersion move (our own status writes), which keeps the revocation path free of
// conflicts. With no finalizers read, the resourceVersion is tested instead.
// Use: p := FinalizersPatch(obj.GetFinalizers()); change obj's finalizers; r.Patch(ctx, obj, p).
func FinalizersPatch(before []string) client.Patch {
	return finalizersJSONPatch{before: slices.Clone(before)}
}

// FinalizersAndAnnotationsPatch is FinalizersPatch that also sets annotations, to the values
// they have on the object when the patch is sent. beforeAnnotations are the object's
// annotations as read: with none, the whole map is added, and the resourceVersion is tested
// too, so that annotations written meanwhile are not replaced.
func FinalizersAndAnnotationsPatch(before []string, beforeAnnotations map[string]string, annotations ...string) client.Patch {
	return finalizersJSONPatch{before: slices.Clone(before), annotations: annotations, hadAnnotations: beforeAnnotations != nil}
}

type finalizersJSONPatch struct {
	before         []string
	annotations    []string
	hadAnnotations bool
}

func (p finalizersJSONPatch) Type() types.PatchType { return types.JSONPatchType }

func (p finalizersJSONPatch) Data(obj client.Object) ([]byte, error) {
	test := map[string]any{"op": "test", "path": "/metadata/finalizers", "value": p.before}
	if len(p.before) == 0 {
		test = map[string]any{"op": "test", "path": "/metadata/resourceVersion", "value": obj.GetResourceVersion()}
	}
	after := obj.GetFinalizers()
	if after == nil {
		after = []string{}
	}
	ops := []map[string]any{test, {"op": "add", "path": "/metadata/finalizers", "value": after}}
	if len(p.annotations) > 0 {
		values := map[string]string{}
		for _, a := range p.annotations {
			values[a] = obj.GetAnnotations()[a]
		}
		if p.hadAnnotations {
			for _, a := range p.annotations {
				// RFC 6901: "~" and "/" in a key are escaped.
				key := strings.NewReplacer("~", "~0", "/", "~1").Replace(a)
				ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations/" + key, "value": values[a]})
			}
		} else {
			if len(p.before) > 0 {
				ops = append(ops, map[string]any{"op": "test", "path": "/metadata/resourceVersion", "value": obj.GetResourceVersion()})
			}
			ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations", "value": values})
		}
	}
	return json.Marshal(ops)
}

// Of returns the status conditions of any kind this operator serves.
func Of(o client.Object) []metav1.Condition {
	switch t := o.(type) {
	case *scimv1.ServiceIdentity:
		return t.Status.Conditions
	case scimv1.GenericTarget:
		return t.TargetStatus().Conditions
	}
	return nil
}

// Truncate cuts s to at most n bytes, ending in "...", on a rune boundary: a cut inside a
// multi-byte character would leave invalid UTF-8 in a condition or an Event. Every message
// shown in a condition, a status entry or an Event passes here, so it also drops what
// scim.Sanitize drops (control and bidi characters, invalid UTF-8), whoever put it in the
// message (a provider's ids and text reach error messages).
func Truncate(s string, n int) string {
	s = scim.Sanitize(s, 0)
	if len(s) <= n {
		return s
	}
	cut := max(n-3, 0)
	// Step back to the start of the character at the cut (at most UTFMax-1 bytes: further
	// back the bytes are not UTF-8 anyway).
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut] + "..."
}

// Clock is c, or the real clock when c is nil (a zero-valued reconciler in a unit test).
func Clock(c clock.PassiveClock) clock.PassiveClock {
	if c == nil {
		return clock.RealClock{}
	}
	return c
}

// Patch writes obj's status as a merge patch against base, the copy the pass started from.
// locked adds an optimistic lock: the write fails with a conflict (and the pass is retried) when
// base is stale, where merging two writers' reports would be wrong. An object that went
// meanwhile is no error.
func Patch(ctx context.Context, c client.StatusClient, obj, base client.Object, locked bool) error {
	p := client.MergeFrom(base)
	if locked {
		p = LockedPatch(base)
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, p))
}

// The kstatus conditions move together: these set Ready, Reconciling and Stalled consistently,
// and record the generation they describe where the verdict is final for it.

// Stall records that a human must act: Ready=False and Stalled=True with reason and message,
// no Reconciling, and the generation observed.
func Stall(conds *[]metav1.Condition, observed *int64, gen int64, reason, msg string) {
	Set(conds, gen, scimv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	Set(conds, gen, scimv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(conds, scimv1.ConditionReconciling)
	*observed = gen
}

// Progress records work under way: Ready=False and Reconciling=True, no Stalled. The
// generation is not observed yet.
func Progress(conds *[]metav1.Condition, gen int64, reason, readyMsg, reconcilingMsg string) {
	Set(conds, gen, scimv1.ConditionReady, metav1.ConditionFalse, reason, readyMsg)
	Set(conds, gen, scimv1.ConditionReconciling, metav1.ConditionTrue, reason, reconcilingMsg)
	meta.RemoveStatusCondition(conds, scimv1.ConditionStalled)
}

// Succeed records the spec done: Ready=True, neither Reconciling nor Stalled, and the
// generation observed.
func Succeed(conds *[]metav1.Condition, observed *int64, gen int64, reason, msg string) {
	Set(conds, gen, scimv1.ConditionReady, metav1.ConditionTrue, reason, msg)
	meta.RemoveStatusCondition(conds, scimv1.ConditionReconciling)
	meta.RemoveStatusCondition(conds, scimv1.ConditionStalled)
	*observed = gen
}
