package plugin

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/governance"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// DefaultOperatorNamespace is where the operator reads ClusterScimTargets' Secrets unless
// installed elsewhere (--cluster-resource-namespace).
const DefaultOperatorNamespace = "scim-operator-system"

// maxImportPageSize bounds the page import asks for, whatever the provider's maxResults.
const maxImportPageSize = 1000

const importLong = `import lists the target's accounts that no identity owns and writes a ServiceIdentity manifest for
each, ready to commit to Git: spec.targetRefs names the target, spec.userName and spec.displayName
are the account's, and spec.adopt names the account (id and userName): once applied, the operator
adopts exactly that account, only while it still has that id and userName and no externalId, and
stamps this cluster's externalId on it. On a target in Observe mode it only plans the adoption
(kubectl scim plan shows Adopt).

An account with any externalId is someone's (this cluster's, or another's) and is never offered;
nor is an account whose userName or id an identity already claims on the target. An inactive
account gets spec.suspend: true, so that adopting it does not reactivate it.

import talks to the target's SCIM endpoint itself, with the target's credentials read from its
Secrets with your own kubeconfig credentials: a ScimTarget's Secrets are in its namespace; a
ClusterScimTarget's are in the operator's namespace (--operator-namespace), which only cluster
admins may read. It reads the accounts in one paged list (pages of the provider's maxResults, at
most 1,000; --filter is sent as a SCIM filter) and nothing else but, when the target's status does
not say it, /ServiceProviderConfig. A ScimTarget's endpoint is dialled through the operator's
address guard (no loopback, link-local or private ranges) unless --allowed-cidrs allows them.

metadata.name is derived from the userName (lowercased, ".<namespace>" dropped, every run of other
characters than a-z, 0-9 and '-' made one '-', no '-' at either end, at most 63 characters); a name that two accounts, or
an account and an existing identity, would share gets "-" and 6 hex digits of the userName's
SHA-256. A comment above each manifest says what was changed.`

func newImportCommand(o *Options) *cobra.Command {
	var (
		filter, owner, outputDir, operatorNS, allowedCIDRs string
		timeout                                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "import TARGET",
		Short: "Write ServiceIdentity manifests (with spec.adopt) for a target's accounts that no identity owns",
		Long:  importLong,
		Example: `  kubectl scim import acme -n payments > payments-identities.yaml
  kubectl scim import acme -n payments --filter 'userName sw "svc-"' --owner alice@example.com --output-dir gitops/payments
  kubectl scim import ClusterScimTarget/corp -n payments --output-dir gitops/payments`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if owner != "" && !ownerPattern.MatchString(owner) {
				return fmt.Errorf("--owner %q is not an e-mail address", owner)
			}
			var allowed []netip.Prefix
			if allowedCIDRs != "" {
				var err error
				if allowed, err = connect.ParseCIDRs(allowedCIDRs); err != nil {
					return fmt.Errorf("--allowed-cidrs: %w", err)
				}
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout must be positive")
			}
			dyn, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			key, err := parseTarget(args[0], ns)
			if err != nil {
				return err
			}
			cfg, err := o.ConfigFlags.ToRESTConfig()
			if err != nil {
				return err
			}
			core, err := corev1client.NewForConfig(cfg)
			if err != nil {
				return err
			}
			imp := &importer{
				dyn: dyn, reader: &coreReader{core: core}, key: key, namespace: ns, filter: filter, owner: owner,
				operatorNS: operatorNS, allowed: allowed, timeout: timeout, now: o.now().UTC(), warn: o.ErrOut,
			}
			res, err := imp.run(cmd.Context())
			if err != nil {
				return err
			}
			if outputDir != "" {
				err = writeManifestFiles(outputDir, res.manifests)
			} else {
				err = writeManifestStream(o.Out, res.manifests)
			}
			if err != nil {
				return err
			}
			return res.summary(o.ErrOut, outputDir)
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", "SCIM filter sent to the provider to narrow the accounts listed, e.g. 'userName sw \"svc-\"'")
	cmd.Flags().StringVar(&owner, "owner", "", "spec.owner of every manifest (the accountable human's e-mail address)")
	cmd.Flags().StringVar(&outputDir, "output-dir", "", "Write one file per account (NAME.yaml) in this directory instead of a multi-document stream to stdout")
	cmd.Flags().StringVar(&operatorNS, "operator-namespace", DefaultOperatorNamespace, "Where the operator reads ClusterScimTargets' Secrets (its --cluster-resource-namespace)")
	cmd.Flags().StringVar(&allowedCIDRs, "allowed-cidrs", "", "Comma-separated ranges a ScimTarget's endpoint may resolve to although loopback, link-local or private (as the operator's --namespaced-target-allowed-cidrs)")
	cmd.Flags().DurationVar(&timeout, "timeout", scim.DefaultTimeout, "Bound of each SCIM request (a list of pages gets four times it in all)")
	return cmd
}

var ownerPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)

// importer is one run of kubectl scim import.
type importer struct {
	dyn        dynamic.Interface
	reader     *coreReader
	key        targetKey
	namespace  string // of the manifests
	filter     string
	owner      string
	operatorNS string
	allowed    []netip.Prefix
	timeout    time.Duration
	now        time.Time
	warn       io.Writer
}

// importResult is what import found and wrote.
type importResult struct {
	target    string
	listed    int // accounts the provider listed
	pages     int // list pages read
	requests  int // SCIM requests: the pages, and /ServiceProviderConfig when read
	pageSize  int
	owned     int // with an externalId
	claimed   int // claimed by an identity (userName or id)
	manifests []manifest
}

// account is what import keeps of an unowned account.
type importAccount struct {
	id, userName, displayName, userType string
	active, activeKnown                 bool
}

// run reads the target, its credentials and its accounts, and builds the manifests.
func (im *importer) run(ctx context.Context) (*importResult, error) {
	obj, err := readTarget(ctx, im.dyn, im.key)
	switch {
	case apierrors.IsNotFound(err):
		if im.key.Kind == scimv1.KindClusterScimTarget {
			return nil, fmt.Errorf("clusterscimtarget %q not found", im.key.Name)
		}
		return nil, fmt.Errorf("scimtarget %q not found in namespace %q (a ClusterScimTarget is named ClusterScimTarget/NAME)", im.key.Name, im.key.Namespace)
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", im.key, err)
	}
	t := targets.Of(obj, im.operatorNS)
	res := &importResult{target: t.Key()}

	c, err := im.client(ctx, t)
	if err != nil {
		return nil, err
	}
	pageSize, filterOK, err := im.capabilities(ctx, t, c, res)
	if err != nil {
		return nil, err
	}
	res.pageSize = pageSize
	kind := dialect.TypeOf(t)
	var unowned []importAccount
	page := func(p []scim.Resource) error {
		res.pages++
		res.requests++
		for _, u := range p {
			res.listed++
			if u.ExternalID() != "" {
				res.owned++
				continue
			}
			a := importAccount{id: u.ID(), userName: dialect.AccountName(u, kind), displayName: u.DisplayName(), userType: u.Str("userType")}
			a.active, a.activeKnown = u.Active()
			unowned = append(unowned, a)
		}
		return nil
	}
	reset := func() { unowned, res.listed, res.owned = nil, 0, 0 }
	filter := im.filter
	if filter != "" && !filterOK {
		im.warnf("Warning: %s says it does not support filters: --filter is not applied, every account is listed.\n", t.Key())
		filter = ""
	}
	err = c.EachPage(ctx, kind.Endpoint, filter, pageSize, 0, page)
	if err != nil && filter != "" && filterUnsupported(err) {
		im.warnf("Warning: the provider refused the filter (%s): --filter is not applied, every account is listed.\n", clean(err.Error(), 512))
		reset()
		err = c.EachPage(ctx, kind.Endpoint, "", pageSize, 0, page)
	}
	if err != nil {
		if errors.Is(err, connect.ErrAddressNotAllowed) {
			return nil, addressError(t, err)
		}
		var se *scim.Error
		if filter != "" && errors.As(err, &se) && se.Status == http.StatusBadRequest {
			return nil, fmt.Errorf("the provider refused --filter %q: %s", filter, clean(err.Error(), 512))
		}
		return nil, fmt.Errorf("listing the accounts of %s: %s", t.Key(), clean(err.Error(), 1024))
	}

	claims, names, err := im.claims(ctx, t)
	if err != nil {
		return nil, err
	}
	var offered []importAccount
	for _, a := range unowned {
		if claims.has(a) {
			res.claimed++
			continue
		}
		if a.userName == "" {
			im.warnf("Warning: account id %q has no %s: not offered.\n", clean(a.id, 128), kind.NameAttr)
			continue
		}
		offered = append(offered, a)
	}
	sort.Slice(offered, func(i, j int) bool {
		li, lj := strings.ToLower(offered[i].userName), strings.ToLower(offered[j].userName)
		if li != lj {
			return li < lj
		}
		return offered[i].id < offered[j].id
	})
	res.manifests = im.manifests(ctx, t, offered, names)
	return res, nil
}

func (im *importer) warnf(format string, args ...any) { _, _ = fmt.Fprintf(im.warn, format, args...) }

// client builds the target's SCIM client as the operator does (internal/connect), with the
// Secrets read with the user's credentials.
func (im *importer) client(ctx context.Context, t *targets.Target) (*scim.Client, error) {
	b := connect.NewSecretClientBuilder(im.reader, im.timeout)
	b.Credentials = &connect.CredentialStore{Reader: im.reader}
	b.Guard = connect.NewAddressGuard(im.allowed, nil)
	c, err := b.ForTarget(ctx, t)
	if err == nil {
		return c, nil
	}
	var se *secretError
	if errors.As(err, &se) {
		return nil, se.explain(t)
	}
	msg := err.Error()
	if t.ClusterScoped() && strings.Contains(msg, " not found") {
		msg += fmt.Sprintf(" (a ClusterScimTarget's Secrets are read from the operator's namespace: --operator-namespace, %q here)", im.operatorNS)
	}
	return nil, fmt.Errorf("credentials of %s: %s", t.Key(), msg)
}

// capabilities decides the page size (the provider's maxResults, at most 1,000) and whether
// the provider filters, from the target's status, else from /ServiceProviderConfig (one
// request), with spec.compatibility's override applied.
func (im *importer) capabilities(ctx context.Context, t *targets.Target, c *scim.Client, res *importResult) (pageSize int, filter bool, err error) {
	maxResults, filter := 0, true
	if caps := t.Status.Capabilities; caps != nil && caps.MaxResults != nil {
		maxResults = int(*caps.MaxResults)
		if caps.Filter != nil {
			filter = *caps.Filter
		}
	} else {
		res.requests++
		spc, err := c.ServiceProviderConfig(ctx)
		switch {
		case errors.Is(err, connect.ErrAddressNotAllowed):
			return 0, false, addressError(t, err)
		case err != nil && (scim.IsUnauthorized(err) || scim.IsRetryable(err)):
			return 0, false, fmt.Errorf("reading %s's /ServiceProviderConfig: %s", t.Key(), clean(err.Error(), 512))
		case err != nil:
			im.warnf("Warning: %s has no readable /ServiceProviderConfig (%s): pages of %d are asked for.\n", t.Key(), clean(err.Error(), 256), scim.DefaultPageSize)
		default:
			maxResults, filter = spc.MaxResults, spc.Filter
		}
		if c := t.Spec.Compatibility; c != nil && c.ServiceProviderConfigOverride != nil {
			if o := c.ServiceProviderConfigOverride; o.MaxResults != nil {
				maxResults = int(*o.MaxResults)
			}
			if o := c.ServiceProviderConfigOverride; o.Filter != nil {
				filter = *o.Filter
			}
		}
	}
	pageSize = scim.DefaultPageSize
	if maxResults > 0 {
		pageSize = min(maxResults, maxImportPageSize)
	}
	return pageSize, filter, nil
}

func addressError(t *targets.Target, err error) error {
	return fmt.Errorf("%s: %w; kubectl scim import guards a ScimTarget's endpoint as the operator does: if you trust it, allow its range with --allowed-cidrs", t.Key(), err)
}

// filterUnsupported: the provider does not do filters (501 or 403), as opposed to a filter
// it found wrong (400, reported as such).
func filterUnsupported(err error) bool {
	var e *scim.Error
	return errors.As(err, &e) && (e.Status == http.StatusNotImplemented || e.Status == http.StatusForbidden)
}

// claimSet holds what the identities using the target claim: userNames (case-insensitively)
// and account ids.
type claimSet struct {
	userNames map[string]bool
	ids       map[string]bool
}

func (c claimSet) has(a importAccount) bool {
	return c.userNames[strings.ToLower(a.userName)] || c.ids[a.id]
}

// claims lists the identities that may use the target (a ScimTarget's namespace; every
// namespace for a ClusterScimTarget, else -n's with a warning) and collects what they claim
// on it, and the names taken in the manifests' namespace.
func (im *importer) claims(ctx context.Context, t *targets.Target) (claimSet, map[string]bool, error) {
	cs := claimSet{userNames: map[string]bool{}, ids: map[string]bool{}}
	names := map[string]bool{}
	listNS := im.namespace
	if t.ClusterScoped() {
		listNS = metav1.NamespaceAll
	}
	ids, err := listIdentities(ctx, im.dyn, listNS)
	if err != nil && listNS == metav1.NamespaceAll && apierrors.IsForbidden(err) {
		im.warnf("Warning: you may not list ServiceIdentities in every namespace: only namespace %s's claims on %s are checked; "+
			"an account another namespace's identity claims but has not adopted yet may be offered (the operator adopts an account only while it has no externalId).\n",
			im.namespace, t.Key())
		ids, err = listIdentities(ctx, im.dyn, im.namespace)
	}
	if err != nil {
		return cs, nil, err
	}
	key := targetKey{Kind: t.Kind, Namespace: t.Namespace, Name: t.Name}
	for _, id := range ids {
		if id.Namespace == im.namespace {
			names[id.Name] = true
		}
		uses := false
		for _, k := range id.targetKeys() {
			uses = uses || k == key
		}
		if !uses {
			continue
		}
		for _, u := range []string{id.EffectiveUserName(), id.Status.UserName} {
			if u != "" {
				cs.userNames[strings.ToLower(u)] = true
			}
		}
		if e := id.entry(key); e != nil {
			if e.UserName != "" {
				cs.userNames[strings.ToLower(e.UserName)] = true
			}
			if e.ID != "" {
				cs.ids[e.ID] = true
			}
		}
		if a := id.Spec.Adopt; a != nil && adoptsOn(id, a, key) {
			cs.ids[a.ID] = true
			cs.userNames[strings.ToLower(a.UserName)] = true
		}
	}
	return cs, names, nil
}

// adoptsOn reports whether spec.adopt is about target k: its target (Kind/name, or a
// ScimTarget's name), or the first target when it names none.
func adoptsOn(id *identity, a *scimv1.AdoptAccount, k targetKey) bool {
	if a.Target == "" {
		keys := id.targetKeys()
		return len(keys) > 0 && keys[0] == k
	}
	kind, name, found := strings.Cut(a.Target, "/")
	if !found {
		kind, name = scimv1.KindScimTarget, a.Target
	}
	if kind != scimv1.KindClusterScimTarget {
		return k.Kind == scimv1.KindScimTarget && k.Namespace == id.Namespace && k.Name == name
	}
	return k.Kind == scimv1.KindClusterScimTarget && k.Name == name
}

// manifest is one ServiceIdentity import writes: the object and the comments above it.
type manifest struct {
	Name     string
	Comments []string
	Object   importedIdentity
	Warnings []string
}

// importedIdentity is the ServiceIdentity as written: no status, no empty metadata fields.
type importedIdentity struct {
	APIVersion string                     `json:"apiVersion"`
	Kind       string                     `json:"kind"`
	Metadata   importedMeta               `json:"metadata"`
	Spec       scimv1.ServiceIdentitySpec `json:"spec"`
}

type importedMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// manifests builds one manifest per offered account, with unique names.
func (im *importer) manifests(ctx context.Context, t *targets.Target, offered []importAccount, taken map[string]bool) []manifest {
	// Names: the derived name, unless two accounts (or an account and an existing identity)
	// would share it: then each of those accounts gets its userName's hash as a suffix.
	derived := make([]nameDerivation, len(offered))
	count := map[string]int{}
	for i, a := range offered {
		derived[i] = deriveName(a.userName, im.namespace)
		count[derived[i].name]++
	}
	ref := scimv1.TargetReference{Name: t.Name}
	adoptTarget := ""
	if t.ClusterScoped() {
		ref.Kind = scimv1.KindClusterScimTarget
		adoptTarget = scimv1.KindClusterScimTarget + "/" + t.Name
	}
	source := fmt.Sprintf("%s (%s)", t.Key(), redactEndpoint(t.Spec.Endpoint))
	withdrawn := ""
	if why, err := targets.NamespaceAllowed(ctx, im.reader, t, im.namespace); err == nil && why != "" {
		withdrawn = why
	}
	guard := governance.GuardrailsOf(t)
	out := make([]manifest, 0, len(offered))
	for i, a := range offered {
		d := derived[i]
		if count[d.name] > 1 || taken[d.name] {
			why := "another account's name would be the same"
			if taken[d.name] {
				why = fmt.Sprintf("ServiceIdentity %s/%s exists", im.namespace, d.name)
			}
			d = d.withSuffix(a.userName, why)
		}
		si := scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: im.namespace}}
		si.Spec = scimv1.ServiceIdentitySpec{
			TargetRefs:  []scimv1.TargetReference{ref},
			UserName:    a.userName,
			DisplayName: a.displayName,
			UserType:    a.userType,
			Owner:       im.owner,
			Adopt:       &scimv1.AdoptAccount{ID: a.id, UserName: a.userName, Target: adoptTarget},
		}
		m := manifest{Name: d.name}
		m.Comments = append(m.Comments,
			fmt.Sprintf("Imported by kubectl scim import from %s at %s.", source, im.now.Format(time.RFC3339)),
			fmt.Sprintf("Account id %q, userName %q, %s, no externalId: spec.adopt lets the operator adopt exactly this account.",
				a.id, a.userName, activeWord(a)))
		if d.changed != "" {
			m.Comments = append(m.Comments, "metadata.name "+d.changed+".")
		}
		if a.activeKnown && !a.active {
			si.Spec.Suspend = true
			m.Comments = append(m.Comments, "spec.suspend: true keeps the inactive account inactive once adopted; remove it to reactivate the account.")
		}
		if len(a.displayName) > 256 || len(a.userType) > 64 || len(a.userName) > 256 || len(a.id) > 512 {
			m.Warnings = append(m.Warnings, "an attribute is longer than the ServiceIdentity allows: the API server will refuse this manifest")
		}
		if err := guard.Check(t, &si); err != nil {
			m.Warnings = append(m.Warnings, err.Error())
		}
		if withdrawn != "" {
			m.Warnings = append(m.Warnings, withdrawn)
		}
		if t.ClusterScoped() && t.Spec.Adoption != scimv1.AdoptionNamed && t.Spec.Adoption != scimv1.AdoptionIfNoExternalID {
			m.Warnings = append(m.Warnings, fmt.Sprintf("%s has spec.adoption %q: it honours spec.adopt only once its admin sets adoption: Named",
				t.Key(), cmp.Or(string(t.Spec.Adoption), string(scimv1.AdoptionNever))))
		}
		m.Object = importedIdentity{APIVersion: scimv1.GroupVersion.String(), Kind: "ServiceIdentity",
			Metadata: importedMeta{Name: si.Name, Namespace: si.Namespace}, Spec: si.Spec}
		out = append(out, m)
	}
	return out
}

func activeWord(a importAccount) string {
	switch {
	case !a.activeKnown:
		return "active not reported"
	case a.active:
		return "active"
	}
	return "inactive"
}

// redactEndpoint shows scheme, host and path of the endpoint: never credentials or a query.
func redactEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "unparsable endpoint"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// nameDerivation is a metadata.name derived from a userName, and what was changed to get it.
type nameDerivation struct {
	name    string
	changed string
}

// maxNameLen keeps names DNS-1123 labels (63), room left for the hash suffix.
const (
	maxNameLen = 63
	suffixLen  = 7 // "-" and 6 hex digits
)

var (
	notNameChars = regexp.MustCompile(`[^a-z0-9-]+`)
	dashes       = regexp.MustCompile(`--+`)
)

// deriveName makes a DNS-1123 label from a userName: lowercased, the namespace suffix
// ".<namespace>" (the operator's default userName <name>.<namespace>) dropped, every run of
// other characters than a-z, 0-9 and '-' one '-', runs of '-' one '-', none at either end, at most 63
// characters ("account" when nothing is left). A name that had to be cut gets the hash suffix,
// so two long userNames with the same beginning do not collide.
func deriveName(userName, namespace string) nameDerivation {
	var changes []string
	s := strings.ToLower(userName)
	if s != userName {
		changes = append(changes, "lowercased")
	}
	if rest, ok := strings.CutSuffix(s, "."+namespace); ok && rest != "" {
		s = rest
		changes = append(changes, fmt.Sprintf("%q dropped", "."+namespace))
	}
	if bad := notNameChars.FindAllString(s, -1); len(bad) > 0 {
		seen := map[string]bool{}
		var chars []string
		for _, run := range bad {
			for _, r := range run {
				if q := fmt.Sprintf("%q", string(r)); !seen[q] {
					seen[q] = true
					chars = append(chars, q)
				}
			}
		}
		sort.Strings(chars)
		changes = append(changes, strings.Join(chars, ", ")+" replaced by '-'")
		s = notNameChars.ReplaceAllString(s, "-")
	}
	if collapsed := dashes.ReplaceAllString(s, "-"); collapsed != s {
		s = collapsed
		changes = append(changes, "runs of '-' made one")
	}
	if trimmed := strings.Trim(s, "-"); trimmed != s {
		s = trimmed
		changes = append(changes, "'-' trimmed from the ends")
	}
	d := nameDerivation{name: s}
	if s == "" {
		d.name = "account"
		changes = append(changes, "nothing usable was left: named \"account\"")
	}
	if len(changes) > 0 {
		d.changed = fmt.Sprintf("derived from userName %q: %s", userName, strings.Join(changes, ", "))
	} else {
		d.changed = ""
	}
	if len(d.name) > maxNameLen {
		d.name = strings.TrimRight(d.name[:maxNameLen-suffixLen], "-")
		return d.withSuffix(userName, "cut to 63 characters")
	}
	return d
}

// withSuffix adds "-" and the first 6 hex digits of the userName's SHA-256.
func (d nameDerivation) withSuffix(userName, why string) nameDerivation {
	sum := sha256.Sum256([]byte(strings.ToLower(userName)))
	suffix := "-" + hex.EncodeToString(sum[:])[:suffixLen-1]
	base := d.name
	if len(base) > maxNameLen-suffixLen {
		base = strings.TrimRight(base[:maxNameLen-suffixLen], "-")
	}
	note := fmt.Sprintf("suffix %q (hash of the userName) added: %s", suffix, why)
	if d.changed == "" {
		d.changed = fmt.Sprintf("derived from userName %q: %s", userName, note)
	} else {
		d.changed += ", " + note
	}
	d.name = base + suffix
	return d
}

// render writes one manifest: its comments (each one line of clean text: a provider's
// userName cannot end a comment and inject YAML) and the object.
func (m manifest) render(w io.Writer) error {
	var b bytes.Buffer
	for _, c := range m.Comments {
		b.WriteString("# " + clean(c, 2048) + "\n")
	}
	for _, c := range m.Warnings {
		b.WriteString("# WARNING: " + clean(c, 2048) + "\n")
	}
	y, err := yaml.Marshal(m.Object)
	if err != nil {
		return err
	}
	b.Write(y)
	_, err = w.Write(b.Bytes())
	return err
}

func writeManifestStream(w io.Writer, ms []manifest) error {
	for i, m := range ms {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if err := m.render(w); err != nil {
			return err
		}
	}
	return nil
}

// writeManifestFiles writes NAME.yaml per manifest in dir (made when missing). Nothing is
// overwritten: a file that exists fails the command before anything is written.
func writeManifestFiles(dir string, ms []manifest) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var exists []string
	for _, m := range ms {
		if _, err := os.Lstat(filepath.Join(dir, m.Name+".yaml")); err == nil {
			exists = append(exists, m.Name+".yaml")
		}
	}
	if len(exists) > 0 {
		more := ""
		if len(exists) > 5 {
			more = fmt.Sprintf(" and %d more", len(exists)-5)
			exists = exists[:5]
		}
		return fmt.Errorf("%s already has %s%s: nothing written (import into an empty directory, or remove them)", dir, strings.Join(exists, ", "), more)
	}
	for _, m := range ms {
		f, err := os.OpenFile(filepath.Join(dir, m.Name+".yaml"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		err = m.render(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// summary tells, on stderr, what was listed, skipped and written.
func (r *importResult) summary(w io.Writer, outputDir string) error {
	p := &printer{w: w}
	p.line("Listed %d account(s) of %s in %d page(s) of up to %d: %d SCIM request(s) in all.", r.listed, r.target, r.pages, r.pageSize, r.requests)
	p.line("Skipped %d with an externalId (this cluster's or another's: never offered) and %d an identity already claims.", r.owned, r.claimed)
	where := "to stdout"
	if outputDir != "" {
		where = "to " + outputDir
	}
	warned := 0
	for _, m := range r.manifests {
		if len(m.Warnings) > 0 {
			warned++
		}
	}
	p.line("Wrote %d ServiceIdentity manifest(s) %s.", len(r.manifests), where)
	if warned > 0 {
		p.line("%d of them carry a WARNING comment: the operator would refuse them as they are (see each).", warned)
	}
	return p.err
}

// coreReader is the client.Reader internal/connect reads Secrets with (and
// targets.NamespaceAllowed Namespaces), through the user's kubeconfig: no cache, no scheme.
type coreReader struct {
	core corev1client.CoreV1Interface
}

// secretError is a Secret the user's credentials could not read.
type secretError struct {
	namespace, name string
	err             error
}

func (e *secretError) Error() string {
	return fmt.Sprintf("reading secret %s/%s: %v", e.namespace, e.name, e.err)
}

func (e *secretError) Unwrap() error { return e.err }

// explain says which Secret of the target could not be read, and who may read it; never its
// content.
func (e *secretError) explain(t *targets.Target) error {
	if !apierrors.IsForbidden(e.err) {
		return fmt.Errorf("credentials of %s: %w", t.Key(), e)
	}
	who := "your credentials may not get it (RBAC: get secrets in namespace " + e.namespace + ")"
	if t.ClusterScoped() {
		who = fmt.Sprintf("a ClusterScimTarget's Secrets live in the operator's namespace %s, which only cluster admins may read: ask one to run kubectl scim import %s",
			e.namespace, t.Kind+"/"+t.Name)
	}
	return fmt.Errorf("cannot read Secret %s/%s, the credentials of %s: forbidden: %s", e.namespace, e.name, t.Key(), who)
}

// Get implements client.Reader for Secrets and Namespaces.
func (r *coreReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *corev1.Secret:
		s, err := r.core.Secrets(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return err // connect says "not found", naming it
			}
			return &secretError{namespace: key.Namespace, name: key.Name, err: err}
		}
		s.DeepCopyInto(o)
		return nil
	case *corev1.Namespace:
		n, err := r.core.Namespaces().Get(ctx, key.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.DeepCopyInto(o)
		return nil
	}
	return fmt.Errorf("kubectl scim import reads no %T", obj)
}

// List implements client.Reader: import lists nothing through it.
func (r *coreReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("kubectl scim import lists nothing through this reader")
}
