package account

import (
	"context"
	"sync"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// SweepFlags carries the identities a sweep found out of step to the identity controller.
// Memory only: after a restart the next sweep flags them again.
type SweepFlags struct {
	flagged sync.Map // verifiedKey -> struct{}
	Wake    chan event.GenericEvent
	// Watched is the set of namespaces the cache holds (--watch-namespaces; nil: every
	// namespace): a sweep leaves the accounts of identities elsewhere alone.
	Watched sets.Set[string]
}

func NewSweepFlags() *SweepFlags { return &SweepFlags{Wake: make(chan event.GenericEvent, 1024)} }

// Watches reports whether identities of namespace are this operator's to flag.
func (f *SweepFlags) Watches(namespace string) bool {
	return f == nil || f.Watched == nil || f.Watched.Has(namespace)
}

// Flag marks the identity's account on target as needing a read and wakes the identity.
func (f *SweepFlags) Flag(ctx context.Context, si *scimv1.ServiceIdentity, target string) {
	if f == nil {
		return
	}
	f.flagged.Store(VerifiedKey(si, target), struct{}{})
	ev := event.GenericEvent{Object: &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: si.Namespace, Name: si.Name}}}
	select {
	case f.Wake <- ev:
	case <-ctx.Done():
	}
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
