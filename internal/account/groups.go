package account

import (
	"context"
	"fmt"
	"slices"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

const groupsEndpoint = "Groups"

// SyncGroups makes the account a member of every wanted group, creating groups that do not
// exist, and removes it from the groups it joined through the operator but are no longer
// wanted. Groups joined by other means are never touched. It returns the groups joined
// through the operator after the calls that succeeded, so the record stays exact on failure.
func (a *Session) SyncGroups(ctx context.Context, userID string, want, joined []string) ([]string, error) {
	now := slices.Clone(joined)
	for _, name := range want {
		if slices.Contains(now, name) {
			continue
		}
		if err := a.joinGroup(ctx, name, userID); err != nil {
			return now, err
		}
		now = append(now, name)
	}
	for _, name := range joined {
		if slices.Contains(want, name) {
			continue
		}
		if err := a.leaveGroup(ctx, name, userID); err != nil {
			return now, err
		}
		now = slices.DeleteFunc(now, func(n string) bool { return n == name })
	}
	return now, nil
}

func (a *Session) findGroup(ctx context.Context, name string) (scim.Resource, error) {
	found, err := a.c.Find(ctx, groupsEndpoint, "displayName", name)
	if err != nil {
		return nil, fmt.Errorf("looking up group %q on %s: %w", name, a.t.Key(), err)
	}
	if len(found) == 0 {
		return nil, nil
	}
	return found[0], nil
}

func (a *Session) joinGroup(ctx context.Context, name, userID string) error {
	g, err := a.findGroup(ctx, name)
	if err != nil {
		return err
	}
	member := []map[string]any{{"value": userID}}
	if g == nil {
		_, err = a.c.Create(ctx, groupsEndpoint, scim.Resource{"schemas": []string{scim.SchemaGroup}, "displayName": name, "members": member})
		if err == nil {
			return nil
		}
		if !scim.IsConflict(err) {
			return fmt.Errorf("creating group %q on %s: %w", name, a.t.Key(), err)
		}
		// Created concurrently by someone else: join it.
		if g, err = a.findGroup(ctx, name); err != nil || g == nil {
			return fmt.Errorf("group %q on %s: created concurrently but not found: %v", name, a.t.Key(), err)
		}
	}
	if isMember(g, userID) {
		return nil
	}
	err = a.changeMembers(ctx, g, userID, true)
	if err != nil {
		return fmt.Errorf("adding the account to group %q on %s: %w", name, a.t.Key(), err)
	}
	return nil
}

// changeMembers adds or removes one member: a PATCH of the group (RFC form), or, where the
// provider refuses PATCH, a PUT of the group as just read with its member list changed by that
// member only (If-Match when the provider supports ETags; without them a concurrent change to
// the group between the read and the PUT can be lost, which status.adaptations says).
func (a *Session) changeMembers(ctx context.Context, g scim.Resource, userID string, add bool) error {
	if a.usePatchOn(groupsEndpoint) {
		var err error
		if add {
			err = a.c.AddMembers(ctx, g.ID(), []string{userID}, 0)
		} else {
			err = a.c.RemoveMember(ctx, g.ID(), userID)
		}
		if !scim.IsNotImplemented(err) {
			return err
		}
		a.patchRefused(groupsEndpoint, err)
	}
	current, err := a.c.Get(ctx, groupsEndpoint, g.ID())
	if err != nil {
		return err
	}
	raw, present := current["members"]
	old, listed := raw.([]any)
	switch {
	case present && raw != nil && !listed:
		return fmt.Errorf("group %s on %s: members is not a list", scim.Sanitize(current.ID(), 128), a.t.Key())
	case !present && !add:
		return nil // nothing listed to leave; the account's own deletion or deactivation stands
	case !present:
		// Empty, or read without its members ("returned: request"): a PUT could drop everyone
		// else, so it is not guessed.
		return fmt.Errorf("the provider refuses PATCH and did not return group %s's members on %s: joining it by a PUT could drop "+
			"its other members; set spec.compatibility.patchMode: Patch if PATCH works, or add the member on the provider",
			scim.Sanitize(current.ID(), 128), a.t.Key())
	}
	// The group as it is, every attribute and every other member entry as the provider sent
	// it (type, $ref, display), changed by our one member only.
	body := scim.Resource{}
	for k, v := range current {
		if k != "meta" {
			body[k] = v
		}
	}
	members := make([]any, 0, len(old)+1)
	for _, m := range old {
		if mm, ok := m.(map[string]any); !ok || mm["value"] != userID {
			members = append(members, m)
		}
	}
	if add {
		members = append(members, map[string]any{"value": userID})
	}
	body["members"] = members
	ifMatch := ""
	if a.useETag() {
		ifMatch = current.Version()
	}
	_, err = a.c.Replace(ctx, groupsEndpoint, current.ID(), body, ifMatch)
	return err
}

// leaveGroup removes one member in RFC form (path members[value eq "<id>"]), never by
// replacing the member list. A missing group counts as done.
func (a *Session) leaveGroup(ctx context.Context, name, userID string) error {
	g, err := a.findGroup(ctx, name)
	if err != nil || g == nil {
		return err
	}
	if !isMember(g, userID) {
		return nil
	}
	if err := a.changeMembers(ctx, g, userID, false); err != nil && !scim.IsNotFound(err) {
		return fmt.Errorf("removing the account from group %q on %s: %w", name, a.t.Key(), err)
	}
	return nil
}

// isMember reports membership; a group listed without members (providers that omit them,
// RFC 7644 §3.4.2.5 "returned: request") is treated as not containing the user, and the add
// that follows is idempotent on conforming providers.
func isMember(g scim.Resource, userID string) bool {
	members, _ := g["members"].([]any)
	for _, m := range members {
		if mm, ok := m.(map[string]any); ok && mm["value"] == userID {
			return true
		}
	}
	return false
}
