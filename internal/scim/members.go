package scim

import "context"

// RemoveMembers removes members from a group in RFC form, one `remove` operation with path
// members[value eq "<id>"] per member, at most chunk operations per PATCH (DefaultMemberChunk,
// 100, when chunk <= 0 or larger: AWS IAM Identity Center refuses more than 100 membership
// changes per request). The Entra-style form, path "members" with a value list, is never
// sent: RFC 7644 §3.5.2.2 lets a provider read a remove without a filter as "remove every
// member", and some do.
func (c *Client) RemoveMembers(ctx context.Context, groupID string, memberIDs []string, chunk int) error {
	if chunk <= 0 || chunk > DefaultMemberChunk {
		chunk = DefaultMemberChunk
	}
	for start := 0; start < len(memberIDs); start += chunk {
		end := min(start+chunk, len(memberIDs))
		ops := make([]PatchOp, 0, end-start)
		for _, id := range memberIDs[start:end] {
			ops = append(ops, PatchOp{Op: "remove", Path: memberPath(id)})
		}
		if _, err := c.Patch(ctx, "Groups", groupID, ops, ""); err != nil {
			return err
		}
	}
	return nil
}

// memberPath is the RFC 7644 §3.5.2.2 path of one member: members[value eq "<id>"].
func memberPath(id string) string { return "members[value eq " + Quote(id) + "]" }
