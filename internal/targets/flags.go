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
	mu sync.Mutex
	// flagged holds, by identity UID, the keys of the targets on which its account is
	// flagged: an identity's flags are read without looking at any other's.
	flagged map[string]sets.Set[string]
	wake    chan event.GenericEvent
	// watched is the set of namespaces the cache holds (--watch-namespaces; nil: every
	// namespace): a sweep leaves the accounts of identities elsewhere alone.
	watched sets.Set[string]
}

// NewSweepFlags makes the flags of an operator whose cache holds the namespaces watched (nil:
// every namespace).
func NewSweepFlags(watched sets.Set[string]) *SweepFlags {
	return &SweepFlags{flagged: map[string]sets.Set[string]{}, wake: make(chan event.GenericEvent, 1024), watched: watched}
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
	f.Mark(si, target)
	ev := event.GenericEvent{Object: &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: si.Namespace, Name: si.Name}}}
	select {
	case f.wake <- ev:
	case <-ctx.Done():
	}
}

// Mark flags the identity's account on target without waking the identity: its next pass,
// whatever wakes it, reads the account.
func (f *SweepFlags) Mark(si *scimv1.ServiceIdentity, target string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	uid := string(si.UID)
	if f.flagged[uid] == nil {
		f.flagged[uid] = sets.New[string]()
	}
	f.flagged[uid].Insert(target)
}

// Targets are the keys of the targets on which the identity's account is flagged.
func (f *SweepFlags) Targets(si *scimv1.ServiceIdentity) []string {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return sets.List(f.flagged[string(si.UID)])
}

// MayHold are the targets that may hold an account of the identity its status does not name:
// those it was created with (Stamped, until its first status) and those its account is flagged
// on (a pass of this process provisioned it there and could not record it). Every revocation
// looks them up, beside the spec's.
func (f *SweepFlags) MayHold(si *scimv1.ServiceIdentity) []scimv1.TargetReference {
	refs := Stamped(si)
	for _, key := range f.Targets(si) {
		if ref, ok := RefOf(key, si.Namespace); ok {
			refs = append(refs, ref)
		}
	}
	return refs
}

// IsFlagged reports whether the account of key (VerifiedKey) is flagged.
func (f *SweepFlags) IsFlagged(key string) bool {
	if f == nil {
		return false
	}
	uid, target, _ := strings.Cut(key, "|")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flagged[uid].Has(target)
}

// Clear drops the flag of key (VerifiedKey).
func (f *SweepFlags) Clear(key string) {
	if f == nil {
		return
	}
	uid, target, _ := strings.Cut(key, "|")
	f.mu.Lock()
	defer f.mu.Unlock()
	if set := f.flagged[uid]; set != nil {
		set.Delete(target)
		if set.Len() == 0 {
			delete(f.flagged, uid)
		}
	}
}

// VerifiedKey keys r.verified: one account, the identity's on one target.
func VerifiedKey(si *scimv1.ServiceIdentity, target string) string {
	return string(si.UID) + "|" + target
}
