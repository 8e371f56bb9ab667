// Package governance decides what the targets' governance asks of an identity (owner, maximum
// lifetime, review) and what their guardrails allow it to claim.
package governance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/connect"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// Governance keeps asking whether an identity's access is still justified while its workload
// lives: its targets may require an accountable owner (checked against an owner directory),
// bound its lifetime (maxTTL) and ask for periodic attestation (review). A target's policy
// applies to every identity that references it; an identity with several targets gets the
// strictest of them. What governance decides is recorded on the identity's status, so a restart
// decides the same.

// Governor decides what governance asks of an identity: the owner it must have and whether the
// owner directory shows it active, the longest life its targets allow, and whether its review is
// due. It reads the targets and asks the directories; its verdicts are recorded on the identity's
// status, so a restart decides the same.
type Governor struct {
	// Client reads targets and creates the SubjectAccessReviews that check a reviewer.
	Client  client.Client
	Clients connect.ClientBuilder
	// Recorder tells of owner and review changes in Events.
	Recorder recorder.EventRecorder
	// ClusterID prefixes this cluster's externalIds: such an account is never an owner.
	ClusterID string
	// ClusterResourceNamespace holds the secrets of ClusterScimTargets.
	ClusterResourceNamespace string
	// Clock tells the time (nil: the real clock).
	Clock clock.PassiveClock
	// owners caches owner directory answers for a resync interval.
	owners ownerChecks
}

// recordHeartbeat is how often an unchanged owner check is written to status all the same.
const recordHeartbeat = time.Hour

func (g *Governor) now() time.Time { return status.Clock(g.Clock).Now() }

// Policy is the strictest governance of the targets an identity references.
type Policy struct {
	// RequireOwner names the targets that require spec.owner.
	RequireOwner []string
	// directories are the owner directories to ask, with the target that named each.
	directories []directory
	// suspendAfter is the shortest grace of the targets whose ownerInactive action is Suspend
	// (0: none suspends).
	suspendAfter time.Duration
	suspends     bool
	// recheck is how often the owner is looked up again: the shortest resync interval.
	recheck time.Duration
	// maxTTL and maxTTLBy: the shortest maxTTL and the target that set it.
	maxTTL   time.Duration
	maxTTLBy string
	// review and reviewBy: the shortest review interval of the targets.
	review   time.Duration
	reviewBy string
}

type directory struct {
	governed string // the target key whose policy names the directory
	ref      scimv1.TargetReference
	attr     string
	// refused says why the directory may not be used from this target.
	refused string
	// namespace the directory is looked up in (a ScimTarget directory: the governed target's).
	namespace string
}

// PolicyOf combines the governance of the targets si references (those that exist).
func (g *Governor) PolicyOf(ctx context.Context, si *scimv1.ServiceIdentity) Policy {
	var p Policy
	for _, ref := range si.Spec.TargetRefs {
		t, err := targets.Get(ctx, g.Client, ref, si.Namespace, g.ClusterResourceNamespace)
		if err != nil || t.Spec.Governance == nil {
			continue
		}
		g := t.Spec.Governance
		if g.RequireOwner {
			p.RequireOwner = append(p.RequireOwner, t.Key())
		}
		if iv := targets.ResyncInterval(t.Spec); p.recheck == 0 || iv < p.recheck {
			p.recheck = iv
		}
		if d := g.OwnerDirectory; d != nil {
			p.directories = append(p.directories, directoryOf(t, d))
		}
		if oi := g.OwnerInactive; oi != nil && oi.Action == scimv1.OwnerInactiveSuspend {
			grace := 72 * time.Hour
			if oi.Grace != nil {
				if d, err := oi.Grace.Parse(); err == nil {
					grace = d
				}
			}
			if !p.suspends || grace < p.suspendAfter {
				p.suspendAfter = grace
			}
			p.suspends = true
		}
		if g.MaxTTL != nil {
			if d, err := g.MaxTTL.Parse(); err == nil && (p.maxTTL == 0 || d < p.maxTTL) {
				p.maxTTL, p.maxTTLBy = d, fmt.Sprintf("%s (maxTTL %s)", t.Key(), string(*g.MaxTTL))
			}
		}
		if g.Review != nil {
			if d, err := g.Review.Every.Parse(); err == nil && (p.review == 0 || d < p.review) {
				p.review, p.reviewBy = d, t.Key()
			}
		}
	}
	return p
}

// directoryOf resolves a target's owner directory. A ScimTarget's directory is a ScimTarget of
// its own namespace: a tenant may not ask the cluster's directory who exists. A
// ClusterScimTarget's is a ClusterScimTarget.
func directoryOf(t *targets.Target, d *scimv1.OwnerDirectory) directory {
	kind := d.Kind
	if kind == "" {
		kind = scimv1.KindScimTarget
	}
	attr := d.Attribute
	if attr == "" {
		attr = "emails"
	}
	dir := directory{governed: t.Key(), ref: scimv1.TargetReference{Kind: kind, Name: d.Name}, attr: attr, namespace: t.Namespace}
	if kind != t.Kind {
		dir.refused = fmt.Sprintf("%s's owner directory must be a %s (a ScimTarget's in its own namespace), not a %s", t.Key(), t.Kind, kind)
	}
	return dir
}

// CapExpiry applies the targets' maxTTL to the identity's expiry: an identity without one gets
// creation + maxTTL, a later one is brought forward; status.expiryCappedBy says which target.
func CapExpiry(si *scimv1.ServiceIdentity, exp *metav1.Time, p Policy) *metav1.Time {
	si.Status.ExpiryCappedBy = ""
	if p.maxTTL == 0 {
		return exp
	}
	limit := metav1.NewTime(si.CreationTimestamp.Add(p.maxTTL))
	if exp != nil && !exp.After(limit.Time) {
		return exp
	}
	si.Status.ExpiryCappedBy = p.maxTTLBy
	return &limit
}

// ownerCheck is one answer of an owner directory, kept for a resync interval: identities
// sharing an owner cost one lookup.
type ownerCheck struct {
	state   scimv1.OwnerState
	message string
	id      string // the owner's account id, when active
	at      time.Time
}

// ownerCacheSize bounds the owner cache: owners are tenant input (every change of spec.owner
// is a new key), so the least recently used answer goes when it is full. A fuller cache only
// costs lookups: the answer is asked again.
const ownerCacheSize = 10000

// ownerChecks caches directory answers by directory, attribute and owner, at most
// ownerCacheSize of them (least recently used first out); an answer older than its resync
// interval is asked again and replaced. The zero value is ready to use.
type ownerChecks struct {
	once  sync.Once
	cache *lru.Cache
	size  int // 0: ownerCacheSize
}

func (o *ownerChecks) entries() *lru.Cache {
	o.once.Do(func() {
		if o.size <= 0 {
			o.size = ownerCacheSize
		}
		o.cache = lru.New(o.size)
	})
	return o.cache
}

// get returns the answer cached for key when it is younger than ttl at now.
func (o *ownerChecks) get(key string, now time.Time, ttl time.Duration) (ownerCheck, bool) {
	v, ok := o.entries().Get(key)
	if !ok {
		return ownerCheck{}, false
	}
	c := v.(ownerCheck)
	if now.Sub(c.at) >= ttl {
		o.entries().Remove(key)
		return ownerCheck{}, false
	}
	return c, true
}

func (o *ownerChecks) put(key string, c ownerCheck) { o.entries().Add(key, c) }

// Verdict runs the Verdict phase: the owner check and the review. It returns why the
// identity must be suspended ("" when it need not), with the reason, and when to look again.
func (g *Governor) Verdict(ctx context.Context, si *scimv1.ServiceIdentity, p Policy, fresh bool) (why, reason string, wake time.Duration) {
	ownerWhy, ownerWake := g.checkOwner(ctx, si, p, fresh)
	reviewWhy, reviewWake := g.checkReview(ctx, si, p)
	wake = ownerWake
	if reviewWake > 0 && (wake == 0 || reviewWake < wake) {
		wake = reviewWake
	}
	switch {
	case reviewWhy != "":
		return reviewWhy, scimv1.ReasonReviewOverdue, wake
	case ownerWhy != "":
		return ownerWhy, scimv1.ReasonOwnerInactive, wake
	}
	return "", "", wake
}

// checkOwner looks spec.owner up in the owner directories (cached for a resync interval),
// records the answer on status.owner with Events on changes, and returns why the identity is
// suspended once the grace has passed under a Suspend policy.
func (g *Governor) checkOwner(ctx context.Context, si *scimv1.ServiceIdentity, p Policy, fresh bool) (string, time.Duration) {
	if len(p.directories) == 0 {
		si.Status.Owner = nil
		meta.RemoveStatusCondition(&si.Status.Conditions, scimv1.ConditionOwnerActive)
		return "", 0
	}
	now := g.now()
	prev := si.Status.Owner
	state, dirs, msg := scimv1.OwnerActive, []string{}, ""
	var accounts []scimv1.OwnerAccount
	for _, d := range p.directories {
		dirKey := targets.Key(d.ref.TargetKind(), d.namespace, d.ref.Name)
		dirs = append(dirs, dirKey)
		st, m, id := g.lookupOwner(ctx, si.Spec.Owner, d, p.recheck, fresh)
		if ownerRank(st) > ownerRank(state) {
			state, msg = st, m
		}
		if st == scimv1.OwnerActive && id != "" && len(accounts) < 8 && !slices.ContainsFunc(accounts, func(a scimv1.OwnerAccount) bool { return a.Directory == dirKey }) &&
			g.agentsNameOwners(ctx, si, d, dirKey) {
			accounts = append(accounts, scimv1.OwnerAccount{Directory: dirKey, ID: id})
		}
	}
	next := &scimv1.OwnerStatus{State: state, Owner: status.Truncate(si.Spec.Owner, 256), Directory: status.Truncate(strings.Join(dirs, ", "), 256),
		Message: status.Truncate(msg, 512), Accounts: accounts}
	if state == scimv1.OwnerUnchecked && prev != nil && prev.State != scimv1.OwnerUnchecked && prev.Owner == next.Owner {
		// The directory did not answer: the last answer stands (a grace keeps running, none starts).
		next.State, next.Since, next.Accounts = prev.State, prev.Since, prev.Accounts
		next.Message = status.Truncate(msg+"; the last answer stands", 512)
	}
	bad := next.State == scimv1.OwnerInactive || next.State == scimv1.OwnerMissing
	switch {
	case bad && prev != nil && prev.Since != nil && (prev.State == scimv1.OwnerInactive || prev.State == scimv1.OwnerMissing):
		next.Since = prev.Since
	case bad:
		since := metav1.NewTime(now)
		next.Since = &since
		g.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonOwnerInactive, "OwnerCheck", "Owner %q: %s", si.Spec.Owner, next.Message)
	case next.State == scimv1.OwnerActive && prev != nil && (prev.State == scimv1.OwnerInactive || prev.State == scimv1.OwnerMissing):
		g.Recorder.Eventf(si, nil, "Normal", scimv1.ReasonOwnerActive, "OwnerCheck", "Owner %q is active in %s", si.Spec.Owner, next.Directory)
	}
	// checkedAt moves when the answer changed, else at most hourly: no status write per check.
	next.CheckedAt = nil
	if prev != nil && prev.CheckedAt != nil && prev.State == next.State && prev.Message == next.Message && now.Sub(prev.CheckedAt.Time) < recordHeartbeat {
		next.CheckedAt = prev.CheckedAt
	} else if next.State != scimv1.OwnerUnchecked {
		at := metav1.NewTime(now)
		next.CheckedAt = &at
	}
	si.Status.Owner = next
	setOwnerActive(si, next)
	wake := p.recheck
	if !bad || !p.suspends {
		return "", wake
	}
	deadline := next.Since.Add(p.suspendAfter)
	if now.Before(deadline) {
		return "", min(wake, deadline.Sub(now))
	}
	return fmt.Sprintf("%s since %s (grace %s): every account is deactivated until an active owner is set in spec.owner",
		next.Message, next.Since.UTC().Format(time.RFC3339), p.suspendAfter), wake
}

func ownerRank(s scimv1.OwnerState) int {
	switch s {
	case scimv1.OwnerMissing:
		return 3
	case scimv1.OwnerInactive:
		return 2
	case scimv1.OwnerUnchecked:
		return 1
	}
	return 0
}

// lookupOwner asks one directory about owner (cached for ttl, unless fresh: a resync request).
// It returns the owner's account id too, when active.
func (g *Governor) lookupOwner(ctx context.Context, owner string, d directory, ttl time.Duration, fresh bool) (scimv1.OwnerState, string, string) {
	if owner == "" {
		return scimv1.OwnerMissing, "spec.owner is not set", ""
	}
	if d.refused != "" {
		return scimv1.OwnerUnchecked, d.refused, ""
	}
	key := strings.Join([]string{d.ref.TargetKind(), d.namespace, d.ref.Name, d.attr, strings.ToLower(owner)}, "|")
	if c, ok := g.owners.get(key, g.now(), ttl); ok && !fresh {
		return c.state, c.message, c.id
	}
	state, msg, id := g.askDirectory(ctx, owner, d)
	if state != scimv1.OwnerUnchecked {
		g.owners.put(key, ownerCheck{state: state, message: msg, id: id, at: g.now()})
	}
	return state, msg, id
}

// askDirectory looks the owner up in the directory target by userName or e-mail address; the
// owner's account id comes back when the owner is active (one account: the first active one).
func (g *Governor) askDirectory(ctx context.Context, owner string, d directory) (scimv1.OwnerState, string, string) {
	dirKey := targets.Key(d.ref.TargetKind(), d.namespace, d.ref.Name)
	t, err := targets.Get(ctx, g.Client, d.ref, d.namespace, g.ClusterResourceNamespace)
	if err != nil {
		return scimv1.OwnerUnchecked, fmt.Sprintf("owner directory %s: %v", dirKey, err), ""
	}
	c, err := g.Clients.ForTarget(ctx, t)
	if err != nil {
		return scimv1.OwnerUnchecked, fmt.Sprintf("owner directory %s: %v", dirKey, err), ""
	}
	filter := "userName eq " + scim.Quote(owner)
	if d.attr == "emails" {
		filter = "emails.value eq " + scim.Quote(owner)
	}
	found, err := c.ListAll(ctx, dialect.UsersEndpoint, filter, 10, 1)
	if err != nil {
		return scimv1.OwnerUnchecked, fmt.Sprintf("owner directory %s did not answer: %v", dirKey, err), ""
	}
	seen, active, id := false, false, ""
	for _, u := range found {
		if !ownerMatches(u, d.attr, owner) { // a provider that ignores the filter answers everyone
			continue
		}
		if strings.HasPrefix(u.ExternalID(), g.ClusterID+"/") {
			continue // an account this operator made (an identity) is nobody's owner, not even its own
		}
		seen = true
		if a, present := u.Active(); (!present || a) && !active {
			active, id = true, u.ID()
		}
	}
	id = referenceable(id)
	switch {
	case !seen && d.ref.ClusterScoped():
		// The cluster's directory tells tenants whether a person is active, not whether they
		// ever were: who exists in it is not theirs to learn.
		return scimv1.OwnerInactive, fmt.Sprintf("owner %q is not an active account in directory %s", owner, dirKey), ""
	case !seen:
		return scimv1.OwnerMissing, fmt.Sprintf("owner %q has no account in directory %s", owner, dirKey), ""
	case !active && d.ref.ClusterScoped():
		return scimv1.OwnerInactive, fmt.Sprintf("owner %q is not an active account in directory %s", owner, dirKey), ""
	case !active:
		return scimv1.OwnerInactive, fmt.Sprintf("owner %q is inactive in directory %s (the person left?)", owner, dirKey), ""
	}
	return scimv1.OwnerActive, "", id
}

// agentsNameOwners reports whether the identity's account on directory d can name its owner:
// d is one of the identity's targets, allows its namespace, and makes draft-wzdk Agents. Only
// then is the owner's id recorded (status.owner.accounts): a tenant does not learn the ids of
// a directory it cannot use.
func (g *Governor) agentsNameOwners(ctx context.Context, si *scimv1.ServiceIdentity, d directory, dirKey string) bool {
	if !slices.ContainsFunc(si.Spec.TargetRefs, func(ref scimv1.TargetReference) bool { return targets.RefKey(ref, si.Namespace) == dirKey }) {
		return false
	}
	t, err := targets.Get(ctx, g.Client, d.ref, d.namespace, g.ClusterResourceNamespace)
	if err != nil || !dialect.TypeOf(t).IsWZDK() {
		return false
	}
	refusal, err := targets.NamespaceAllowed(ctx, g.Client, t, si.Namespace)
	return err == nil && refusal == ""
}

// referenceable is id when an owners reference and the identity's status can carry it (a
// directory's answer is provider input): at most 256 bytes of UTF-8, no control or format
// character (bidi overrides), no '/', '?' or '#', not "." or ".."; else "" (the owner is active,
// and not named).
func referenceable(id string) string {
	if len(id) > 256 || !utf8.ValidString(id) || strings.ContainsAny(id, "/?#") || id == "." || id == ".." ||
		strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return ""
	}
	return id
}

// ownerMatches re-checks a directory's answer: its userName, or one of its e-mail addresses,
// is the owner (case-insensitively).
func ownerMatches(u scim.Resource, attr, owner string) bool {
	if attr == "userName" {
		return strings.EqualFold(u.UserName(), owner)
	}
	emails, _ := u["emails"].([]any)
	for _, e := range emails {
		if m, ok := e.(map[string]any); ok {
			if v, _ := m["value"].(string); strings.EqualFold(v, owner) {
				return true
			}
		}
	}
	return false
}

// reviewSkew is how far in the future an attestation may be (clocks differ).
const reviewSkew = time.Minute

// attestation takes the reviewed-at annotation into st when it is a valid time, not in the
// future, new, and set by a subject who may review. It returns the time attested (zero when
// none was taken) and how soon to look again when the reviewer could not be checked yet.
func (g *Governor) attestation(ctx context.Context, si *scimv1.ServiceIdentity, st, prev *scimv1.ReviewStatus, now time.Time) (time.Time, time.Duration) {
	v, ok := si.Annotations[scimv1.ReviewedAtAnnotation]
	if !ok {
		return time.Time{}, 0
	}
	at, err := time.Parse(time.RFC3339, v)
	switch {
	case err != nil:
		st.Message = status.Truncate(fmt.Sprintf("annotation %s=%q is not an RFC 3339 time; it is ignored", scimv1.ReviewedAtAnnotation, v), 512)
		return time.Time{}, 0
	case at.After(now.Add(reviewSkew)):
		st.Message = status.Truncate(fmt.Sprintf("annotation %s=%q is in the future; it is ignored", scimv1.ReviewedAtAnnotation, v), 512)
		return time.Time{}, 0
	case st.LastReviewedAt != nil && st.LastReviewedAt.Time.Equal(at.Truncate(time.Second)):
		return time.Time{}, 0 // taken already (status keeps seconds): it stands, whatever its author may do now
	}
	a := attesterOf(si.Annotations)
	why, err := g.mayReview(ctx, si, a, v)
	switch {
	case err != nil:
		st.Message = status.Truncate(fmt.Sprintf("annotation %s=%q is not taken yet: %v; retrying", scimv1.ReviewedAtAnnotation, v, err), 512)
		return time.Time{}, reviewerRetry
	case why != "":
		st.Message = status.Truncate(why, 512)
		if prev == nil || prev.Message != st.Message {
			g.Recorder.Eventf(si, nil, "Warning", "AttestationIgnored", "Review", "%s", st.Message)
		}
		return time.Time{}, 0
	}
	reviewed := metav1.NewTime(at)
	st.LastReviewedAt = &reviewed
	st.ReviewedBy = status.Truncate(a.user, 256)
	return at, 0
}

// checkReview records the identity's attestation and when the next is due, and returns why it
// is suspended when it is overdue. An attestation counts only when made by a user who may
// review the identity (attestation.go).
func (g *Governor) checkReview(ctx context.Context, si *scimv1.ServiceIdentity, p Policy) (string, time.Duration) {
	every := p.review
	if si.Spec.Review != nil {
		if d, err := si.Spec.Review.Every.Parse(); err == nil && (every == 0 || d < every) {
			every = d
		}
	}
	if every == 0 {
		si.Status.Review = nil
		return "", 0
	}
	now := g.now()
	st := &scimv1.ReviewStatus{Every: *scimv1.DurationOf(every)}
	prev := si.Status.Review
	base := si.CreationTimestamp.Time
	if prev != nil && prev.LastReviewedAt != nil {
		// The last attestation taken stands until a valid one replaces it: an annotation
		// edited to something unusable does not reset the clock to the creation.
		st.LastReviewedAt = prev.LastReviewedAt.DeepCopy()
		st.ReviewedBy = prev.ReviewedBy
		base = prev.LastReviewedAt.Time
	}
	at, retry := g.attestation(ctx, si, st, prev, now)
	if !at.IsZero() {
		base = at // an attestation older than the identity (carried over from a manifest) counts as it is
	}
	if st.LastReviewedAt != nil && (prev == nil || prev.LastReviewedAt == nil || !prev.LastReviewedAt.Equal(st.LastReviewedAt)) {
		g.Recorder.Eventf(si, nil, "Normal", "Attested", "Review", "Attested by %q at %s; next review due by %s", st.ReviewedBy,
			st.LastReviewedAt.UTC().Format(time.RFC3339), base.Add(every).UTC().Format(time.RFC3339))
	}
	st.NextReviewAt = metav1.NewTime(base.Add(every))
	si.Status.Review = st
	if now.Before(st.NextReviewAt.Time) {
		if retry > 0 {
			return "", min(retry, st.NextReviewAt.Sub(now))
		}
		return "", st.NextReviewAt.Sub(now)
	}
	return fmt.Sprintf("review overdue since %s (every %s): every account is deactivated until attested with annotation %s "+
		"by a user with the %q verb on serviceidentities", st.NextReviewAt.UTC().Format(time.RFC3339), every,
		scimv1.ReviewedAtAnnotation, scimv1.ReviewVerb), retry
}

// setOwnerActive sets the OwnerActive condition from the owner check on record.
func setOwnerActive(si *scimv1.ServiceIdentity, next *scimv1.OwnerStatus) {
	cond := metav1.ConditionTrue
	reason, msg := scimv1.ReasonOwnerActive, fmt.Sprintf("Owner %q is active in %s", si.Spec.Owner, next.Directory)
	switch next.State {
	case scimv1.OwnerInactive, scimv1.OwnerMissing:
		cond, reason, msg = metav1.ConditionFalse, scimv1.ReasonOwnerInactive, next.Message
	case scimv1.OwnerUnchecked:
		cond, reason, msg = metav1.ConditionUnknown, scimv1.ReasonDirectoryUnavailable, next.Message
	}
	status.Set(&si.Status.Conditions, si.Generation, scimv1.ConditionOwnerActive, cond, reason, msg)
}
