package workload

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Bounds of the ServiceIdentity API (the kubebuilder markers on ServiceIdentitySpec): a value
// beyond them is reported on the workload as an invalid annotation rather than failing, again
// and again, the identity's creation.
const (
	maxTargetRefs      = 32
	maxGroups          = 64
	maxDisplayNameLen  = 256
	maxOwnerLen        = 254
	maxDurationLen     = 32
	exampleTargetsList = `"acme,ClusterScimTarget/corp"`
)

// ownerPattern is the API's pattern for spec.owner (the API server matches it with Go's regexp).
var ownerPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)

// durationPattern is the API's pattern for scimv1.Duration.
var durationPattern = regexp.MustCompile(`^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$`)

// specFromAnnotations builds the spec of a workload's identity from its scim.nhi.dev/*
// annotations (targets is the value of AnnotationTargets). It is pure: the same annotations
// always give the same spec, and a value the API would refuse is an error naming the
// annotation, which the workload reconciler reports as an InvalidAnnotation Event (nothing is
// created or changed).
//
//   - targets: a comma-separated list of "<name>" (a ScimTarget in the workload's namespace) or
//     "<kind>/<name>" with kind ScimTarget or ClusterScimTarget; spaces around items and empty
//     items are ignored, a target named twice counts once. At least one, at most 32.
//   - groups: a comma-separated list of group displayNames, duplicates dropped; at most 64.
//   - owner: an e-mail address. display-name: free text. ttl: a positive Go duration.
//
// userName, userType, suspend, attributes, expiresAt and deletionPolicy have no annotation:
// the identity gets the API's defaults (userType is defaulted by the schema; the reconciler keeps
// the defaulted value).
func specFromAnnotations(targets string, ann map[string]string) (*scimv1.ServiceIdentitySpec, error) {
	spec := &scimv1.ServiceIdentitySpec{}
	for _, item := range splitList(targets) {
		ref := scimv1.TargetReference{Kind: scimv1.KindScimTarget, Name: item}
		if kind, name, ok := strings.Cut(item, "/"); ok {
			ref = scimv1.TargetReference{Kind: strings.TrimSpace(kind), Name: strings.TrimSpace(name)}
			if ref.Kind != scimv1.KindScimTarget && ref.Kind != scimv1.KindClusterScimTarget {
				return nil, fmt.Errorf("annotation %s: %q: kind must be ScimTarget or ClusterScimTarget", scimv1.AnnotationTargets, item)
			}
		}
		// Targets are Kubernetes objects: a name that is not a valid object name names none.
		if ref.Name == "" || len(validation.IsDNS1123Subdomain(ref.Name)) > 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a target name", scimv1.AnnotationTargets, item)
		}
		if !slices.Contains(spec.TargetRefs, ref) {
			spec.TargetRefs = append(spec.TargetRefs, ref)
		}
	}
	switch n := len(spec.TargetRefs); {
	case n == 0:
		return nil, fmt.Errorf("annotation %s is empty: name at least one target, e.g. %s", scimv1.AnnotationTargets, exampleTargetsList)
	case n > maxTargetRefs:
		return nil, fmt.Errorf("annotation %s names %d targets; at most %d", scimv1.AnnotationTargets, n, maxTargetRefs)
	}
	for _, g := range splitList(ann[scimv1.AnnotationGroups]) {
		if !slices.Contains(spec.Groups, g) { // the API keeps groups as a set: a duplicate is refused
			spec.Groups = append(spec.Groups, g)
		}
	}
	if n := len(spec.Groups); n > maxGroups {
		return nil, fmt.Errorf("annotation %s names %d groups; at most %d", scimv1.AnnotationGroups, n, maxGroups)
	}
	spec.Owner = strings.TrimSpace(ann[scimv1.AnnotationOwner])
	if spec.Owner != "" && (!ownerPattern.MatchString(spec.Owner) || utf8.RuneCountInString(spec.Owner) > maxOwnerLen) {
		return nil, fmt.Errorf("annotation %s: %q is not an e-mail address", scimv1.AnnotationOwner, spec.Owner)
	}
	spec.DisplayName = strings.TrimSpace(ann[scimv1.AnnotationDisplayName])
	if n := utf8.RuneCountInString(spec.DisplayName); n > maxDisplayNameLen {
		return nil, fmt.Errorf("annotation %s is %d characters long; at most %d", scimv1.AnnotationDisplayName, n, maxDisplayNameLen)
	}
	if v := strings.TrimSpace(ann[scimv1.AnnotationTTL]); v != "" {
		ttl := scimv1.Duration(v)
		if _, err := ttl.Parse(); err != nil || !durationPattern.MatchString(v) || len(v) > maxDurationLen {
			return nil, fmt.Errorf("annotation %s: %q is not a positive duration (e.g. 24h)", scimv1.AnnotationTTL, v)
		}
		spec.TTL = &ttl
	}
	return spec, nil
}

// splitList splits a comma-separated annotation value, trimming spaces and dropping empty items.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}
