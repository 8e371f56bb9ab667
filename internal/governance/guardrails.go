package governance

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// ErrGuardrail: the identity asks for something its target's guardrails do not allow.
var ErrGuardrail = errors.New("not allowed by the target's guardrails")

// sensitiveAttributes can only be set where a target's guardrails name them: a "*" never
// covers them, and an unset allow-list on a ScimTarget does not either.
var sensitiveAttributes = []string{"password", "roles", "entitlements", "x509Certificates"}

func isSensitive(name string) bool {
	return slices.ContainsFunc(sensitiveAttributes, func(s string) bool { return strings.EqualFold(s, name) })
}

// Guardrails is a target's spec.Guardrails with the kind's defaults applied: restrictive on a
// ClusterScimTarget (cluster-admin credentials shared with tenants), open on a ScimTarget
// (the tenant's own credentials).
type Guardrails struct {
	userNames  scimv1.UserNameScope
	userTypes  []string // nil: any
	groups     []string // nil: any
	attributes []string // nil: any but the sensitive ones
}

func GuardrailsOf(t *targets.Target) Guardrails {
	g := Guardrails{userNames: scimv1.UserNamesAny}
	if t.ClusterScoped() {
		g = Guardrails{userNames: scimv1.UserNamesNamespaced, userTypes: []string{"ServiceAccount", "Agent"},
			groups: []string{}, attributes: []string{}}
	}
	if s := t.Spec.Guardrails; s != nil {
		if s.UserNames != "" {
			g.userNames = s.UserNames
		}
		if s.Groups != nil {
			g.groups = append([]string{}, s.Groups.Allowed...)
		}
		if s.UserTypes != nil {
			g.userTypes = append([]string{}, s.UserTypes.Allowed...)
		}
		if s.Attributes != nil {
			g.attributes = append([]string{}, s.Attributes.Allowed...)
		}
	}
	return g
}

// Check returns an errGuardrail naming every claim of the identity the target does not allow:
// its userName, groups and the attributes of spec.attributes.
func (g Guardrails) Check(t *targets.Target, si *scimv1.ServiceIdentity) error {
	var refused []string
	if g.userNames == scimv1.UserNamesNamespaced {
		if u := si.EffectiveUserName(); !namespacedUserName(u, si.Namespace) {
			refused = append(refused, fmt.Sprintf("userName %q (must be <letters, digits, '.', '-', '_'>.%s)", u, si.Namespace))
		}
	}
	if g.userTypes != nil && si.Spec.UserType != "" &&
		!slices.ContainsFunc(g.userTypes, func(p string) bool { return strings.EqualFold(p, si.Spec.UserType) }) {
		refused = append(refused, fmt.Sprintf("userType %q", si.Spec.UserType))
	}
	for _, grp := range si.Spec.Groups {
		if !g.GroupAllowed(grp, si.Namespace) {
			refused = append(refused, fmt.Sprintf("group %q", grp))
		}
	}
	for _, a := range attributeNames(si) {
		if !g.attributeAllowed(a) {
			refused = append(refused, fmt.Sprintf("attribute %q", a))
		}
	}
	if why := account.DeletionPolicyRefused(t, si); why != "" {
		refused = append(refused, why)
	}
	if len(refused) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s may not claim %s (see spec.guardrails of %s)", ErrGuardrail, "namespace "+si.Namespace,
		strings.Join(refused, ", "), t.Key())
}

func (g Guardrails) GroupAllowed(name, namespace string) bool {
	return g.groups == nil || slices.ContainsFunc(g.groups, func(p string) bool {
		return globMatch(strings.ReplaceAll(p, "{namespace}", namespace), name)
	})
}

// namespacedUserName: the userName is "<label>.<namespace>" where label has only letters,
// digits, '.', '-' and '_' (so never an e-mail address such as ceo@acme.dev in namespace
// "dev"), compared case-insensitively.
func namespacedUserName(u, namespace string) bool {
	label, ok := strings.CutSuffix(strings.ToLower(u), "."+namespace)
	return ok && userNameLabel.MatchString(label)
}

var userNameLabel = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,190}$`)

// attributeAllowed decides one attribute name: "title", or "<urn>:<sub-attribute>" for an
// extension.
func (g Guardrails) attributeAllowed(name string) bool {
	sub := name
	urn := ""
	if scim.IsSchemaURN(name) {
		if i := strings.LastIndex(name, ":"); i > 0 {
			urn, sub = name[:i], name[i+1:]
		}
	}
	named := func(p string) bool { return strings.EqualFold(p, name) }
	if isSensitive(sub) {
		return slices.ContainsFunc(g.attributes, named)
	}
	if g.attributes == nil {
		return true
	}
	return slices.ContainsFunc(g.attributes, func(p string) bool {
		return p == "*" || named(p) || (urn != "" && strings.EqualFold(p, urn))
	})
}

// attributeNames lists what spec.attributes sets: top-level names, and "<urn>:<name>" for
// each sub-attribute of an extension. Sorted, for stable messages.
func attributeNames(si *scimv1.ServiceIdentity) []string {
	if si.Spec.Attributes == nil || len(si.Spec.Attributes.Raw) == 0 {
		return nil
	}
	var extra map[string]any
	if json.Unmarshal(si.Spec.Attributes.Raw, &extra) != nil {
		return nil // desiredUser reports it
	}
	var names []string
	for k, v := range extra {
		obj, ok := v.(map[string]any)
		if !scim.IsSchemaURN(k) || !ok {
			names = append(names, k)
			continue
		}
		for sk := range obj {
			names = append(names, k+":"+sk)
		}
	}
	sort.Strings(names)
	return names
}

// globMatch matches s against a pattern where "*" stands for any run of characters,
// case-insensitively. (path.Match would also give '/', '[' and '\' meanings group names do
// not expect.)
func globMatch(pattern, s string) bool {
	p, v := strings.ToLower(pattern), strings.ToLower(s)
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == v
	}
	if !strings.HasPrefix(v, parts[0]) {
		return false
	}
	v = v[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(v, mid)
		if i < 0 {
			return false
		}
		v = v[i+len(mid):]
	}
	return strings.HasSuffix(v, parts[len(parts)-1])
}
