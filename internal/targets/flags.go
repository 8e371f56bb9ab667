package targets

import (
	"context"
	"strings"
	"sync"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// SweepFlags carries the identities a sweep found out of step to the identity controller.
// Memory only: after a restart the next sweep flags them again.
type SweepFlags struct {
	flagged sync.Map // VerifiedKey -> struct{}
	wake    chan event.GenericEvent
	// watched is the set of namespaces the cache holds (--watch-namespaces; nil: every
	// namespace): a sweep leaves the accounts of identities elsewhere alone.
	watched sets.Set[string]
}

// NewSweepFlags makes the flags of an operator whose cache holds the namespaces watched (nil:
// every namespace).
func NewSweepFlags(watched sets.Set[string]) *SweepFlags {
	return &SweepFlags{wake: make(chan event.GenericEvent, 1024), watched: watched}
}

// Woken are the identities flagged, for the identity controller's watch.
func (f *SweepFlags) Woken() <-chan event.GenericEvent { return f.wake }

// Watches reports whether identities of namespace are this operator's to flag.
func (f *SweepFlags) Watches(namespace string) bool {
	return f == nil || f.watched == nil || f.watched.Has(namespace)
}

// Flag marks the identity's account on target as needing a read and wakes the identity.
func (f *SweepFlags) Flag(ctx context.Context, si *scimv1.ServiceIdentity, target string) {
	if f == nil {
		return
	}
	f.flagged.Store(VerifiedKey(si, target), struct{}{})
	ev := event.GenericEvent{Object: &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: si.Namespace, Name: si.Name}}}
	select {
	case f.wake <- ev:
	case <-ctx.Done():
	}
}

// Mark flags the identity's account on target without waking the identity: its next pass,
// whatever wakes it, reads the account.
func (f *SweepFlags) Mark(si *scimv1.ServiceIdentity, target string) {
	if f != nil {
		f.flagged.Store(VerifiedKey(si, target), struct{}{})
	}
}

// Targets are the keys of the targets on which the identity's account is flagged.
func (f *SweepFlags) Targets(si *scimv1.ServiceIdentity) []string {
	if f == nil {
		return nil
	}
	var out []string
	prefix := VerifiedKey(si, "")
	f.flagged.Range(func(k, _ any) bool {
		if target, ok := strings.CutPrefix(k.(string), prefix); ok {
			out = append(out, target)
		}
		return true
	})
	return out
}

func (f *SweepFlags) IsFlagged(key string) bool {
	if f == nil {
		return false
	}
	_, ok := f.flagged.Load(key)
	return ok
}

func (f *SweepFlags) Clear(key string) {
	if f != nil {
		f.flagged.Delete(key)
	}
}

// VerifiedKey keys r.verified: one account, the identity's on one target.
func VerifiedKey(si *scimv1.ServiceIdentity, target string) string {
	return string(si.UID) + "|" + target
}
