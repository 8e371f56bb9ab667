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

// find looks the account up without creating one: the account carrying our externalId (or,
// matching by userName, ours or one the adoption policy lets us take over), else the one
// spec.adopt names. adopted: the account is not ours yet.
func (a *Session) find(ctx context.Context) (scim.Resource, bool, error) {
	if a.matchAttr == scimv1.MatchUserName {
		found, adopted, err := a.byUserName(ctx)
		if err != nil || found != nil {
			return found, adopted, err
		}
	} else {
		found, err := a.byExternalID(ctx)
		if err != nil || found != nil {
			return found, false, err
		}
	}
	if a.adopt == nil {
		return nil, false, nil
	}
	return a.adoptNamed(ctx)
}

// adoptNamed reads the account spec.adopt names and takes it over only while it is exactly
// what was imported: that id, that userName (the identity's own) and no externalId at all.
// An account that is gone is not adopted (a new one is created); one that changed is a
// conflict, left untouched.
func (a *Session) adoptNamed(ctx context.Context) (scim.Resource, bool, error) {
	user, err := a.Read(ctx, a.adopt.ID)
	if scim.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading account %s (spec.adopt) on %s: %w", scim.Sanitize(a.adopt.ID, 64), a.t.Key(), err)
	}
	name := scim.Sanitize(dialect.AccountName(user, a.kind), 256)
	switch {
	case a.Ours(user):
		return user, false, nil
	case user.ExternalID() != "":
		return nil, false, fmt.Errorf("%w: the account spec.adopt names (id %s) on %s now carries an externalId: it is someone else's and is left untouched",
			outcome.ErrConflict, scim.Sanitize(a.adopt.ID, 64), a.t.Key())
	case !strings.EqualFold(name, a.adopt.UserName) || !strings.EqualFold(name, a.userName):
		return nil, false, fmt.Errorf("%w: the account spec.adopt names (id %s) on %s has userName %q, not %q as imported and as the identity's: it is left untouched",
			outcome.ErrConflict, scim.Sanitize(a.adopt.ID, 64), a.t.Key(), name, a.adopt.UserName)
	}
	return user, true, nil
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
