package dialect

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Adaptation names: how the operator works around a provider's dialect, shown on the
// target's status.adaptations.
const (
	AdaptListWithoutFilter = "ListWithoutFilter"
	AdaptPerIdentityReads  = "PerIdentityReads"
	AdaptUpdateWithPut     = "UpdateWithPut"
	AdaptMatchByUserName   = "MatchByUserName"
	AdaptNoETags           = "NoETags"
	AdaptPatchRefused      = "PatchRefused"
	AdaptCaseInsensitive   = "UserNameMatchedOnClient"
	AdaptOwnersRefused     = "OwnersRefused"
)

// OwnersRefused reports a provider that refused an Agent's owners (400) within
// PatchRefusalTTL: Agents are written without owners until then (WithOwners is not applied).
func (o *Observed) OwnersRefused(target string) bool {
	return o.HasWithin(target, AdaptOwnersRefused, PatchRefusalTTL)
}

// Observed remembers, per target, what providers answered that discovery did not say:
// a PATCH refused although advertised, a userName filter matched case-sensitively. Memory
// only: after a restart the first refusal teaches it again, and the call is retried the other
// way at once.
type Observed struct {
	m sync.Map // target key -> *targetDialect
	// Clock tells the time of notes (nil: the real clock).
	Clock clock.PassiveClock
}

type targetDialect struct {
	mu    sync.Mutex
	notes map[string]dialectNote // adaptation key -> what was seen
}

type dialectNote struct {
	message string
	at      time.Time
}

// PatchRefusalTTL is how long a PATCH refused on one resource endpoint sends that endpoint's
// updates by PUT; then PATCH is tried again (a provider that refused it once, or a hostile
// one that wants group members replaced wholesale, does not decide for ever).
const PatchRefusalTTL = 15 * time.Minute

// PatchRefusedKey keys the refusal of PATCH on one resource endpoint ("Users", "Groups"...).
func PatchRefusedKey(endpoint string) string { return AdaptPatchRefused + ":" + endpoint }

func (o *Observed) Note(target, name, message string) {
	if o == nil {
		return
	}
	v, _ := o.m.LoadOrStore(target, &targetDialect{notes: map[string]dialectNote{}})
	d := v.(*targetDialect)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notes[name] = dialectNote{message: message, at: o.now()}
}

func (o *Observed) now() time.Time {
	if o.Clock != nil {
		return o.Clock.Now()
	}
	return time.Now()
}

func (o *Observed) Has(target, name string) bool { return o.HasWithin(target, name, 0) }

// hasWithin reports a note taken less than ttl ago (ttl 0: whenever); an older one is dropped.
func (o *Observed) HasWithin(target, name string, ttl time.Duration) bool {
	if o == nil {
		return false
	}
	v, ok := o.m.Load(target)
	if !ok {
		return false
	}
	d := v.(*targetDialect)
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.notes[name]
	if ok && ttl > 0 && o.now().Sub(n.at) >= ttl {
		delete(d.notes, name)
		return false
	}
	return ok
}

func (o *Observed) All(target string) map[string]string {
	out := map[string]string{}
	if o == nil {
		return out
	}
	if v, ok := o.m.Load(target); ok {
		d := v.(*targetDialect)
		d.mu.Lock()
		defer d.mu.Unlock()
		for k, n := range d.notes {
			name, _, _ := strings.Cut(k, ":")
			if prev, ok := out[name]; ok {
				out[name] = status.Truncate(prev+"; "+n.message, 512)
				continue
			}
			out[name] = n.message
		}
	}
	return out
}

func (o *Observed) Forget(target string) {
	if o != nil {
		o.m.Delete(target)
	}
}

// Adaptations lists the Adaptations in effect on a target, from its discovered (or
// overridden) capabilities, its compatibility settings and its last sweep.
func Adaptations(t *targets.Target, observed map[string]string) []scimv1.Adaptation {
	var out []scimv1.Adaptation
	add := func(name, format string, args ...any) {
		out = append(out, scimv1.Adaptation{Name: name, Message: status.Truncate(fmt.Sprintf(format, args...), 512)})
	}
	caps, compat := t.Status.Capabilities, t.Spec.Compatibility
	switch {
	case compat != nil && compat.PatchMode == scimv1.PatchModePut:
		add(AdaptUpdateWithPut, "spec.compatibility.patchMode is Put: accounts are updated with PUT of the whole resource")
	case (compat == nil || compat.PatchMode != scimv1.PatchModePatch) && caps != nil && caps.Patch != nil && !*caps.Patch:
		add(AdaptUpdateWithPut, "The provider does not support PATCH: accounts are updated with PUT of the whole resource")
	}
	if caps != nil && (caps.ETag == nil || !*caps.ETag) {
		add(AdaptNoETags, "The provider does not support ETags: updates are sent without If-Match, and ownership is proven by a read before each write")
	}
	if compat != nil && compat.MatchAttribute == scimv1.MatchUserName {
		add(AdaptMatchByUserName, "spec.compatibility.matchAttribute is userName: existing accounts are found by userName first")
	}
	for _, name := range slices.Sorted(maps.Keys(observed)) {
		add(name, "%s", observed[name])
	}
	if s := t.Status.Sweep; s != nil {
		switch s.Listing {
		case scimv1.SweepUnfiltered:
			add(AdaptListWithoutFilter, "%s", s.Message)
		case scimv1.SweepPerIdentity:
			add(AdaptPerIdentityReads, "%s", s.Message)
		}
	}
	return out
}
