package account

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Session performs the SCIM calls for one identity on one target. An account is ours only
// when its externalId is this cluster's id for the identity: every write (PATCH, PUT, DELETE)
// goes to an account a read has just shown to carry it. Status ids are hints, never proof.
type Session struct {
	c *scim.Client
	t *targets.Target
	// externalID is this cluster's id for the identity; userName its effective userName.
	externalID string
	userName   string
	// Desired is the User the spec asks for (nil when deprovisioning).
	Desired   scim.Resource
	matchAttr scimv1.MatchAttribute
	adoption  scimv1.AdoptionPolicy
	// adopt is the identity's spec.adopt when it names an account on this target; adoptRefused
	// says why it is not honoured there (a ClusterScimTarget that does not allow it).
	adopt        *scimv1.AdoptAccount
	adoptRefused string
	// GroupAllowed, when set, tells the groups an adopted account may already belong to (a
	// ClusterScimTarget's guardrails); an account in any other is not adopted.
	GroupAllowed func(displayName string) bool
	// kind is the resource type the target's accounts are made as (User, Agent...).
	kind dialect.AccountType
	// dialects records what the provider answered that discovery did not say.
	dialects *dialect.Observed
	// charge reserves one remote deletion with the circuit breaker (per namespace); refund
	// gives it back when nothing was changed. nil: no breaker.
	charge func(ctx context.Context) error
	refund func()
}

// Ours reports whether a resource read from the target is this identity's account.
// An id a status could not hold (too long, not UTF-8) is never Ours either.
func (a *Session) Ours(u scim.Resource) bool {
	return u != nil && u.ID() != "" && len(u.ID()) <= maxAccountIDBytes && utf8.ValidString(u.ID()) && u.ExternalID() == a.externalID
}

// maxAccountIDBytes bounds the provider-assigned ids the operator records on status.
const maxAccountIDBytes = 512

// usePatch decides PATCH or PUT for the accounts from spec.compatibility and the discovered
// capabilities.
func (a *Session) usePatch() bool { return a.usePatchOn(a.kind.Endpoint) }

// usePatchOn decides PATCH or PUT for one resource endpoint: a refusal seen there (and only
// there) sends PUT for dialect.PatchRefusalTTL, then PATCH is tried again.
func (a *Session) usePatchOn(endpoint string) bool {
	if c := a.t.Spec.Compatibility; c != nil {
		switch c.PatchMode {
		case scimv1.PatchModePatch:
			return true
		case scimv1.PatchModePut:
			return false
		}
	}
	if a.dialects.HasWithin(a.t.Key(), dialect.PatchRefusedKey(endpoint), dialect.PatchRefusalTTL) {
		return false
	}
	if caps := a.t.Status.Capabilities; caps != nil && caps.Patch != nil {
		return *caps.Patch
	}
	return true
}

// patchRefused records a provider refusing PATCH (501/405) although discovery said it
// supports it: from now on accounts are updated with PUT, and groups by replacing their members.
func (a *Session) patchRefused(endpoint string, err error) {
	what := "accounts are updated with PUT"
	if endpoint == groupsEndpoint {
		what = "group members are changed by a PUT of the group"
	}
	a.dialects.Note(a.t.Key(), dialect.PatchRefusedKey(endpoint), status.Truncate(fmt.Sprintf(
		"The provider refused a PATCH of /%s (%v) although its ServiceProviderConfig advertises it: %s for %s, then PATCH is tried again",
		endpoint, err, what, dialect.PatchRefusalTTL), 512))
}

func (a *Session) useETag() bool {
	caps := a.t.Status.Capabilities
	return caps != nil && caps.ETag != nil && *caps.ETag
}

// ifMatch is the If-Match for a write to u, just read: its version where the provider
// supports ETags, else "".
func (a *Session) ifMatch(u scim.Resource) string {
	if !a.useETag() {
		return ""
	}
	return u.Version()
}

// Ensure makes the account exist and match desired. knownID is the id from status, a hint:
// the account there is used only if it carries our externalId. A new account costs one
// lookup and one POST; an unchanged one costs one GET.
func (a *Session) Ensure(ctx context.Context, knownID string) (user scim.Resource, adopted, updated bool, err error) {
	user, adopted, updated, err = a.ensure(ctx, knownID)
	if _, owners := a.Desired["owners"]; !owners || !scim.IsBadRequest(err) {
		return user, adopted, updated, err
	}
	// A provider that will not take an Agent's owners (read-only there, or references it does
	// not accept) must not hold the rest of the account back: without them, and when that
	// works, its refusal is remembered for dialect.PatchRefusalTTL and shown on the target.
	withOwners := a.Desired
	a.Desired = maps.Clone(a.Desired)
	delete(a.Desired, "owners")
	user, adopted, updated, err2 := a.ensure(ctx, knownID)
	if err2 != nil {
		a.Desired = withOwners
		return nil, false, false, err
	}
	a.dialects.Note(a.t.Key(), dialect.AdaptOwnersRefused, status.Truncate(fmt.Sprintf(
		"The provider refused an Agent's owners (%v): Agents are written without owners for %s, then owners are tried again",
		err, dialect.PatchRefusalTTL), 512))
	return user, adopted, updated, nil
}

func (a *Session) ensure(ctx context.Context, knownID string) (user scim.Resource, adopted, updated bool, err error) {
	if knownID != "" {
		user, err = a.Read(ctx, knownID)
		switch {
		case scim.IsNotFound(err):
			user = nil // deleted on the target: find or recreate below
		case err != nil:
			return nil, false, false, fmt.Errorf("reading account %s on %s: %w", knownID, a.t.Key(), err)
		case !a.Ours(user):
			user = nil // the id now names someone else's account: never write to it
		}
	}
	if user == nil {
		user, adopted, err = a.findOrCreate(ctx)
		if err != nil {
			return nil, false, false, err
		}
	}
	before := user
	user, err = a.update(ctx, user)
	return user, adopted, err == nil && scim.Diff(a.Desired, before) != nil, err
}

// findOrCreate finds our account, or an adoptable one, or creates it.
func (a *Session) findOrCreate(ctx context.Context) (scim.Resource, bool, error) {
	found, adopted, err := a.find(ctx)
	if err != nil || found != nil {
		return found, adopted, err
	}
	created, err := a.c.Create(ctx, a.kind.Endpoint, a.Desired)
	if err == nil {
		if a.Ours(created) {
			return created, false, nil
		}
		// The answer does not show our externalId: a partial representation, or a provider
		// naming someone else's account. Only a read of that id that shows ours proves it.
		read, rerr := a.Read(ctx, created.ID())
		if rerr != nil && !scim.IsNotFound(rerr) {
			return nil, false, fmt.Errorf("reading back account %q created on %s: %w", a.userName, a.t.Key(), rerr)
		}
		if !a.Ours(read) {
			return nil, false, fmt.Errorf("%w: the account %s answered to creating %q does not carry externalId %q when read back; it is left untouched",
				outcome.ErrConflict, a.t.Key(), a.userName, a.externalID)
		}
		return read, false, nil
	}
	if !scim.IsConflict(err) {
		return nil, false, fmt.Errorf("creating account %q on %s: %w", a.userName, a.t.Key(), err)
	}
	// 409: our earlier POST landed (a crash before the status write), or someone else holds
	// the userName.
	if found, lerr := a.byExternalID(ctx); lerr != nil || found != nil {
		return found, false, lerr
	}
	found, adopted, lerr := a.byUserName(ctx)
	if st := scim.TypeOf(err); lerr == nil && found == nil && (st == "uniqueness" || st == "") {
		// Only a uniqueness refusal (or one that does not say) is worth a scan of the target.
		found, adopted, lerr = a.byUserNameScan(ctx)
	}
	if errors.Is(lerr, outcome.ErrConflict) {
		return nil, false, fmt.Errorf("%w (the target answered: %v)", lerr, err) // keep the target's own detail
	}
	if lerr != nil || found != nil {
		return found, adopted, lerr
	}
	return nil, false, fmt.Errorf("%w: creating account %q on %s was refused (%v), and no account with that userName can be read",
		outcome.ErrConflict, a.userName, a.t.Key(), err)
}

// Read GETs the account with this id; an answer that names another id is someone else's
// resource and is refused.
func (a *Session) Read(ctx context.Context, id string) (scim.Resource, error) {
	u, err := a.c.Get(ctx, a.kind.Endpoint, id)
	if err != nil {
		return nil, err
	}
	if u.ID() != id {
		return nil, fmt.Errorf("reading account %s on %s: %w: the answer names another id", id, a.t.Key(), scim.ErrMalformedResponse)
	}
	return u, nil
}

// byExternalID returns the account carrying our externalId; two or more is a conflict a
// human must resolve (provisioning never picks one).
func (a *Session) byExternalID(ctx context.Context) (scim.Resource, error) {
	mine, err := a.findOurs(ctx)
	if err != nil {
		return nil, err
	}
	switch len(mine) {
	case 0:
		return nil, nil
	case 1:
		return mine[0], nil
	}
	ids := make([]string, 0, 3)
	for _, u := range mine[:min(len(mine), 3)] {
		ids = append(ids, scim.Sanitize(u.ID(), 64))
	}
	return nil, fmt.Errorf("%w: %d accounts on %s carry externalId %q (ids %s...); remove the duplicates on the target",
		outcome.ErrConflict, len(mine), a.t.Key(), a.externalID, strings.Join(ids, ", "))
}

// findOurs lists every account carrying our externalId.
func (a *Session) findOurs(ctx context.Context) ([]scim.Resource, error) {
	found, err := a.c.Find(ctx, a.kind.Endpoint, "externalId", a.externalID)
	if err != nil {
		return nil, fmt.Errorf("looking up externalId %q on %s: %w", a.externalID, a.t.Key(), err)
	}
	var mine []scim.Resource
	for _, u := range found {
		if a.Ours(u) {
			mine = append(mine, u)
		}
	}
	return mine, nil
}

// byUserName returns the account with our userName when it is ours, or adoptable under the
// target's adoption policy (no externalId at all, and spec.adoption IfNoExternalID). Any
// other account with that userName is a conflict: it is a person's, or another identity's.
func (a *Session) byUserName(ctx context.Context) (scim.Resource, bool, error) {
	found, err := a.c.Find(ctx, a.kind.Endpoint, a.kind.NameAttr, a.userName)
	if err != nil {
		return nil, false, fmt.Errorf("looking up userName %q on %s: %w", a.userName, a.t.Key(), err)
	}
	return a.classifyByUserName(found)
}

// byUserNameScan is byUserName for a provider whose filter did not find a userName its
// uniqueness check knows (it matches userName eq case-sensitively, where RFC 7643 says
// caseExact false): every account is listed and compared case-insensitively here.
func (a *Session) byUserNameScan(ctx context.Context) (scim.Resource, bool, error) {
	var found []scim.Resource
	err := a.c.EachPage(ctx, a.kind.Endpoint, "", PageSize, 0, func(page []scim.Resource) error {
		for _, u := range page {
			if strings.EqualFold(dialect.AccountName(u, a.kind), a.userName) {
				found = append(found, u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing the accounts of %s to find userName %q: %w", a.t.Key(), a.userName, err)
	}
	if len(found) > 0 {
		a.dialects.Note(a.t.Key(), dialect.AdaptCaseInsensitive, "The provider's userName filter missed an account its uniqueness check knows "+
			"(userName matched case-sensitively): after a 409, accounts are listed and their userNames compared case-insensitively by the operator")
	}
	return a.classifyByUserName(found)
}

// classifyByUserName decides among the accounts with our userName (see byUserName).
func (a *Session) classifyByUserName(found []scim.Resource) (scim.Resource, bool, error) {
	var mine, adoptable []scim.Resource
	foreign := 0
	for _, u := range found {
		switch {
		case a.Ours(u):
			mine = append(mine, u)
		case u.ExternalID() == "":
			adoptable = append(adoptable, u)
		default:
			foreign++
		}
	}
	switch {
	case len(mine) == 1:
		return mine[0], false, nil // others with the same userName are not ours and stay untouched
	case len(mine) > 1:
		return nil, false, fmt.Errorf("%w: %d accounts on %s with userName %q carry externalId %q; remove the duplicates on the target",
			outcome.ErrConflict, len(mine), a.t.Key(), a.userName, a.externalID)
	case foreign > 0:
		return nil, false, fmt.Errorf("%w: userName %q on %s belongs to an account with another externalId; it is left untouched. "+
			"Choose another spec.userName", outcome.ErrConflict, a.userName, a.t.Key())
	case len(adoptable) == 1 && a.adoption == scimv1.AdoptionIfNoExternalID:
		return adoptable[0], true, nil
	case len(adoptable) > 0:
		return nil, false, fmt.Errorf("%w: userName %q on %s belongs to an account without an externalId (made by hand, or a person's); "+
			"it is left untouched. Choose another spec.userName, or set spec.adoption: IfNoExternalID on the target to take it over",
			outcome.ErrConflict, a.userName, a.t.Key())
	}
	return nil, false, nil
}

// update corrects the owned attributes that differ; one PATCH (or PUT) at most, retried once
// on 412 after a read that proves ownership again. user was just read and is ours (or adoptable).
func (a *Session) update(ctx context.Context, user scim.Resource) (scim.Resource, error) {
	for attempt := 0; ; attempt++ {
		ops := scim.Diff(a.Desired, user)
		if len(ops) == 0 {
			return user, nil
		}
		ifMatch := ""
		if a.useETag() {
			ifMatch = user.Version()
		}
		var updated scim.Resource
		var err error
		if a.usePatch() {
			updated, err = a.c.Patch(ctx, a.kind.Endpoint, user.ID(), ops, ifMatch)
			if scim.IsNotImplemented(err) {
				a.patchRefused(a.kind.Endpoint, err)
			}
		}
		if !a.usePatch() {
			updated, err = a.c.Replace(ctx, a.kind.Endpoint, user.ID(), scim.ReplaceBody(a.Desired, user), ifMatch)
		}
		if scim.IsPreconditionFailed(err) && attempt == 0 {
			id, adoptable := user.ID(), user.ExternalID() == ""
			if user, err = a.Read(ctx, id); err != nil {
				return nil, fmt.Errorf("re-reading account %s on %s after 412: %w", id, a.t.Key(), err)
			}
			if !a.Ours(user) && (!adoptable || user.ExternalID() != "") {
				return nil, fmt.Errorf("%w: account %s on %s changed owner while being updated; it is left untouched", outcome.ErrConflict, id, a.t.Key())
			}
			if !a.Ours(user) && a.adopt != nil {
				// Being adopted: the whole check again (a rename in between is not ours to undo).
				if err := a.adoptable(ctx, user); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("updating account %s on %s: %w", user.ID(), a.t.Key(), err)
		}
		if updated == nil { // 204 No Content: no answer shows what the target did
			if active, _ := a.Desired.Active(); !active {
				// A suspension is what an incident relies on: it is recorded only as the
				// target shows it, so the account is read back.
				read, err := a.Read(ctx, user.ID())
				if err != nil {
					return nil, fmt.Errorf("reading back account %s on %s after deactivating it: %w", user.ID(), a.t.Key(), err)
				}
				if !a.Ours(read) {
					return nil, fmt.Errorf("%w: account %s on %s changed owner while being updated; it is left untouched", outcome.ErrConflict, user.ID(), a.t.Key())
				}
				return read, nil
			}
			updated = scim.MergeForReplace(a.Desired, user)
			updated["id"] = user.ID()
		}
		return updated, nil
	}
}

// PageSize is the page a listing of accounts asks for (a sweep may ask for more).
const PageSize = 200
