package account

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// AdoptOn is si's spec.adopt when it names an account on t: spec.adopt.target is t's
// Kind/name (or, for a ScimTarget, its name), or empty and t is the identity's first target.
func AdoptOn(si *scimv1.ServiceIdentity, t *targets.Target) *scimv1.AdoptAccount {
	ad := si.Spec.Adopt
	if ad == nil || len(si.Spec.TargetRefs) == 0 {
		return nil
	}
	ref := si.Spec.TargetRefs[0]
	if ad.Target != "" {
		kind, name, found := strings.Cut(ad.Target, "/")
		if !found {
			kind, name = scimv1.KindScimTarget, ad.Target
		}
		ref = scimv1.TargetReference{Kind: kind, Name: name}
	}
	if targets.RefKey(ref, si.Namespace) != t.Key() {
		return nil
	}
	return ad
}

// adoptAllowed says why spec.adopt is not honoured on t ("" when it is): a ClusterScimTarget,
// whose credentials its admin lends to tenants, adopts named accounts only when its
// spec.adoption is Named or IfNoExternalID.
func adoptAllowed(t *targets.Target) string {
	if !t.ClusterScoped() || t.Spec.Adoption == scimv1.AdoptionNamed || t.Spec.Adoption == scimv1.AdoptionIfNoExternalID {
		return ""
	}
	return fmt.Sprintf("spec.adopt is not honoured on %s: its spec.adoption is Never (its admin sets adoption: Named to let imported accounts be adopted)", t.Key())
}

// find looks the account up without creating one: the account carrying our externalId (or,
// matching by userName, ours or one the adoption policy lets us take over), else the one
// spec.adopt names. adopted: the account is not ours yet.
func (a *Session) find(ctx context.Context) (scim.Resource, bool, error) {
	if a.adopt != nil || a.adoptRefused != "" {
		// An identity that names its account: ours if it already carries our externalId, else
		// exactly that account or nothing.
		found, err := a.byExternalID(ctx)
		if err != nil || found != nil {
			return found, false, err
		}
		if a.adoptRefused != "" {
			return nil, false, fmt.Errorf("%w: %s", outcome.ErrConflict, a.adoptRefused)
		}
		return a.adoptNamed(ctx)
	}
	if a.matchAttr == scimv1.MatchUserName {
		return a.byUserName(ctx)
	}
	found, err := a.byExternalID(ctx)
	return found, false, err
}

// adoptNamed reads the account spec.adopt names and takes it over only while it is exactly
// what was imported (adoptable). Whatever differs, the answer is the same and names nothing of
// the account: a tenant learns no other account's attributes through spec.adopt.
func (a *Session) adoptNamed(ctx context.Context) (scim.Resource, bool, error) {
	user, err := a.Read(ctx, a.adopt.ID)
	if err != nil && !scim.IsNotFound(err) {
		return nil, false, fmt.Errorf("reading the account spec.adopt names on %s: %w", a.t.Key(), err)
	}
	if err == nil && a.Ours(user) {
		return user, false, nil
	}
	if err == nil {
		err = a.adoptable(ctx, user)
	} else {
		err = a.notAsImported()
	}
	if err != nil {
		return nil, false, err
	}
	return user, true, nil
}

// notAsImported is the one answer for an account spec.adopt names that is not what was imported.
func (a *Session) notAsImported() error {
	return fmt.Errorf("%w: the account spec.adopt names on %s is not the one imported (gone, renamed, or owned by another system now): "+
		"it is left untouched; import it again", outcome.ErrConflict, a.t.Key())
}

// adoptable checks an account spec.adopt names, just read: that id, the userName imported (the
// identity's own), no externalId; active only if the identity may have it active (adoption never
// re-activates an account), and in no group GroupAllowed refuses.
func (a *Session) adoptable(ctx context.Context, user scim.Resource) error {
	name := dialect.AccountName(user, a.kind)
	if user.ID() != a.adopt.ID || user.ExternalID() != "" || !strings.EqualFold(name, a.adopt.UserName) || !strings.EqualFold(name, a.userName) {
		return a.notAsImported()
	}
	if active, present := user.Active(); present && !active {
		if want, _ := a.Desired.Active(); want {
			return fmt.Errorf("%w: the account spec.adopt names on %s is inactive, and adopting never re-activates an account: "+
				"set spec.suspend: true to adopt it as it is, then resume it", outcome.ErrConflict, a.t.Key())
		}
	}
	if a.GroupAllowed == nil {
		return nil
	}
	groups, err := a.c.Find(ctx, groupsEndpoint, "members.value", user.ID())
	if err != nil {
		return fmt.Errorf("reading the groups of the account spec.adopt names on %s: %w", a.t.Key(), err)
	}
	for _, g := range groups {
		if !a.GroupAllowed(g.Str("displayName")) {
			return fmt.Errorf("%w: the account spec.adopt names on %s belongs to a group the target's guardrails do not allow: it is left untouched",
				outcome.ErrConflict, a.t.Key())
		}
	}
	return nil
}

// Plan is what provisioning would do to the account, with reads only: the lookups of Ensure,
// then the attributes that differ. joined are the groups the operator made the account a
// member of, groups the ones the spec asks for. The account read (nil when none) is returned
// for the evidence it carries.
func (a *Session) Plan(ctx context.Context, knownID string, joined, groups []string) (scimv1.AccountPlan, scim.Resource, error) {
	var user scim.Resource
	if knownID != "" {
		u, err := a.Read(ctx, knownID)
		switch {
		case err != nil && !scim.IsNotFound(err):
			return scimv1.AccountPlan{}, nil, fmt.Errorf("reading account %s on %s: %w", knownID, a.t.Key(), err)
		case err == nil && a.Ours(u):
			user = u
		}
	}
	adopted := false
	if user == nil {
		var err error
		if user, adopted, err = a.find(ctx); err != nil {
			if o := outcome.Classify(err); o.Reason == scimv1.ReasonAccountConflict {
				return scimv1.AccountPlan{Action: scimv1.PlanConflict, Reason: status.Truncate(err.Error(), 512)}, nil, nil
			}
			return scimv1.AccountPlan{}, nil, err
		}
	}
	if user == nil && a.matchAttr != scimv1.MatchUserName {
		// What a create would meet: an account holding the userName (a 409, then the lookup by
		// userName of findOrCreate) is a conflict, or one the adoption policy takes over.
		var err error
		if user, adopted, err = a.byUserName(ctx); err != nil {
			if o := outcome.Classify(err); o.Reason == scimv1.ReasonAccountConflict {
				return scimv1.AccountPlan{Action: scimv1.PlanConflict, Reason: status.Truncate(err.Error(), 512)}, nil, nil
			}
			return scimv1.AccountPlan{}, nil, err
		}
	}
	if user == nil {
		p := scimv1.AccountPlan{Action: scimv1.PlanCreate, GroupsAdded: bounded(groups)}
		p.Changes = planChanges(a.Desired, scim.Resource{})
		return p, nil, nil
	}
	p := scimv1.AccountPlan{Action: scimv1.PlanNone}
	want, have := sets.New(groups...), sets.New(joined...)
	if adopted {
		have = sets.New[string]()
		p.Action = scimv1.PlanAdopt
	}
	p.GroupsAdded, p.GroupsRemoved = bounded(sets.List(want.Difference(have))), bounded(sets.List(have.Difference(want)))
	p.Changes = planChanges(a.Desired, user)
	for _, c := range p.Changes {
		if strings.EqualFold(c.Path, "active") && c.Desired == "false" && p.Action != scimv1.PlanAdopt {
			p.Action = scimv1.PlanDeactivate
		}
	}
	if p.Action == scimv1.PlanNone && (len(p.Changes) > 0 || len(p.GroupsAdded) > 0 || len(p.GroupsRemoved) > 0) {
		p.Action = scimv1.PlanUpdate
	}
	return p, user, nil
}

// planChanges are the attributes that would change, as status shows them (at most 32).
func planChanges(desired, current scim.Resource) []scimv1.AttributeChange {
	var out []scimv1.AttributeChange
	for _, c := range scim.Changes(desired, current) {
		if len(out) == 32 {
			break
		}
		ch := scimv1.AttributeChange{Path: status.Truncate(c.Op.Path, 256), Desired: jsonValue(c.Desired)}
		if c.Present {
			ch.Current = jsonValue(c.Current)
		}
		out = append(out, ch)
	}
	return out
}

// jsonValue shows a value as bounded JSON.
func jsonValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return status.Truncate(scim.Sanitize(string(b), 0), 512)
}

// bounded keeps the first 64 names, as status holds them.
func bounded(names []string) []string {
	if len(names) > 64 {
		return names[:64]
	}
	return names
}
