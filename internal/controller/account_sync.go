package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

const usersEndpoint = "Users"

// errNotAdoptable: an account with our userName exists but belongs to someone else.
var errNotAdoptable = errors.New("account exists and is not adoptable")

// accountSync performs the SCIM calls for one identity on one target.
type accountSync struct {
	c         *scim.Client
	t         *Target
	desired   scim.Resource
	matchAttr scimv1.MatchAttribute
}

// usePatch decides PATCH or PUT from spec.compatibility and the discovered capabilities.
func (a *accountSync) usePatch() bool {
	if c := a.t.Spec.Compatibility; c != nil {
		switch c.PatchMode {
		case scimv1.PatchModePatch:
			return true
		case scimv1.PatchModePut:
			return false
		}
	}
	if caps := a.t.Status.Capabilities; caps != nil && caps.Patch != nil {
		return *caps.Patch
	}
	return true
}

func (a *accountSync) useETag() bool {
	caps := a.t.Status.Capabilities
	return caps != nil && caps.ETag != nil && *caps.ETag
}

// ensure makes the account exist and match desired. knownID is the id from status, if any.
// A new account costs one lookup and one POST; an unchanged one costs one GET.
func (a *accountSync) ensure(ctx context.Context, knownID string) (user scim.Resource, adopted, updated bool, err error) {
	if knownID != "" {
		user, err = a.c.Get(ctx, usersEndpoint, knownID)
		switch {
		case scim.IsNotFound(err):
			user = nil // deleted on the target: find or recreate below
		case err != nil:
			return nil, false, false, fmt.Errorf("reading account %s on %s: %w", knownID, a.t.Key(), err)
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
	return user, adopted, err == nil && diffUser(a.desired, before) != nil, err
}

func (a *accountSync) findOrCreate(ctx context.Context) (scim.Resource, bool, error) {
	externalID, _ := a.desired["externalId"].(string)
	userName, _ := a.desired["userName"].(string)
	first, firstVal := "externalId", externalID
	if a.matchAttr == scimv1.MatchUserName {
		first, firstVal = "userName", userName
	}
	found, err := a.lookup(ctx, first, firstVal, externalID)
	if err != nil || found != nil {
		return found, found != nil, err
	}
	created, err := a.c.Create(ctx, usersEndpoint, a.desired)
	if err == nil {
		return created, false, nil
	}
	if !scim.IsConflict(err) {
		return nil, false, fmt.Errorf("creating account %q on %s: %w", userName, a.t.Key(), err)
	}
	// 409: someone holds the userName (or our earlier POST landed). Look up again and adopt.
	for _, attr := range []string{"externalId", "userName"} {
		val := externalID
		if attr == "userName" {
			val = userName
		}
		found, lerr := a.lookup(ctx, attr, val, externalID)
		if errors.Is(lerr, errNotAdoptable) {
			return nil, false, fmt.Errorf("%v; %w", err, lerr) // keep the target's own detail
		}
		if lerr != nil {
			return nil, false, lerr
		}
		if found != nil {
			return found, true, nil
		}
	}
	return nil, false, fmt.Errorf("%w: creating account %q on %s returned %v, and no account with externalId %q or an empty externalId was found",
		errNotAdoptable, userName, a.t.Key(), err, externalID)
}

// lookup finds an adoptable account: one whose externalId is ours, or empty (made by hand).
// An account with another externalId is someone else's and is refused.
func (a *accountSync) lookup(ctx context.Context, attr, value, externalID string) (scim.Resource, error) {
	matches, err := a.c.Find(ctx, usersEndpoint, attr, value)
	if err != nil {
		return nil, fmt.Errorf("looking up %s %q on %s: %w", attr, value, a.t.Key(), err)
	}
	var refused []string
	for _, m := range matches {
		switch m.ExternalID() {
		case externalID, "":
			return m, nil
		default:
			refused = append(refused, m.ExternalID())
		}
	}
	if len(refused) > 0 && attr == "userName" {
		return nil, fmt.Errorf("%w: userName %q on %s belongs to externalId %s", errNotAdoptable, value, a.t.Key(), strings.Join(refused, ", "))
	}
	return nil, nil
}

// update corrects the owned attributes that differ; one PATCH (or PUT) at most, retried once on 412.
func (a *accountSync) update(ctx context.Context, user scim.Resource) (scim.Resource, error) {
	for attempt := 0; ; attempt++ {
		ops := diffUser(a.desired, user)
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
			updated, err = a.c.Patch(ctx, usersEndpoint, user.ID(), ops, ifMatch)
		} else {
			updated, err = a.c.Replace(ctx, usersEndpoint, user.ID(), mergeForReplace(a.desired, user), ifMatch)
		}
		if scim.IsPreconditionFailed(err) && attempt == 0 {
			if user, err = a.c.Get(ctx, usersEndpoint, user.ID()); err != nil {
				return nil, fmt.Errorf("re-reading account %s on %s after 412: %w", user.ID(), a.t.Key(), err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("updating account %s on %s: %w", user.ID(), a.t.Key(), err)
		}
		if updated == nil { // 204 No Content: the change is applied; keep what we know
			updated = mergeForReplace(a.desired, user)
			updated["id"] = user.ID()
		}
		return updated, nil
	}
}

// deprovision applies a Delete or Deactivate policy. 404 at any step counts as done.
func (a *accountSync) deprovision(ctx context.Context, id, externalID string, policy scimv1.DeletionPolicy, groups []string) error {
	if id == "" {
		found, err := a.lookup(ctx, "externalId", externalID, externalID)
		if err != nil {
			return err
		}
		if found == nil {
			return nil
		}
		id = found.ID()
	}
	deactivate := []scim.PatchOp{{Op: "replace", Path: "active", Value: false}}
	var err error
	if a.usePatch() {
		_, err = a.c.Patch(ctx, usersEndpoint, id, deactivate, "")
	} else {
		var cur scim.Resource
		cur, err = a.c.Get(ctx, usersEndpoint, id)
		if err == nil {
			cur["active"] = false
			_, err = a.c.Replace(ctx, usersEndpoint, id, mergeForReplace(scim.Resource{}, cur), "")
		}
	}
	if scim.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deactivating account %s on %s: %w", id, a.t.Key(), err)
	}
	if policy != scimv1.DeletionPolicyDelete {
		return nil
	}
	// Providers differ in whether deleting a user drops its memberships; leave explicitly.
	for _, g := range groups {
		if err := a.leaveGroup(ctx, g, id); err != nil {
			return err
		}
	}
	if err := a.c.Delete(ctx, usersEndpoint, id); err != nil && !scim.IsNotFound(err) {
		return fmt.Errorf("deleting account %s on %s: %w", id, a.t.Key(), err)
	}
	return nil
}
