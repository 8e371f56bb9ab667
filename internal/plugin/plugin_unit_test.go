package plugin

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

func TestReviewTime(t *testing.T) {
	now := time.Date(2026, 11, 25, 9, 30, 15, 999, time.FixedZone("CET", 3600))
	cases := []struct{ at, want, wantErr string }{
		{at: "", want: "2026-11-25T08:30:15Z"},                                         // now, in UTC, whole seconds
		{at: "2026-11-25T08:30:15.000000999Z", want: "2026-11-25T08:30:15.000000999Z"}, // exactly now
		{at: "2026-11-25T10:30:15+02:00", want: "2026-11-25T08:30:15Z"},
		{at: "2026-11-25T08:30:15.000001Z", wantErr: "in the future"},
		{at: "2027-01-01T00:00:00Z", wantErr: "in the future"},
		{at: "2026-11-25", wantErr: "not an RFC 3339 time"},
		{at: "2026-11-25t08:00:00Z", wantErr: "not an RFC 3339 time"},
		{at: "1 hour ago", wantErr: "not an RFC 3339 time"},
	}
	for _, c := range cases {
		got, err := reviewTime(c.at, now)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("reviewTime(%q) = %v, %v; want an error with %q", c.at, got, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("reviewTime(%q): %v", c.at, err)
		case got.Format(time.RFC3339Nano) != c.want:
			t.Errorf("reviewTime(%q) = %s, want %s", c.at, got.Format(time.RFC3339Nano), c.want)
		}
	}
}

func TestRevokeReasonIsOneBoundedLine(t *testing.T) {
	cases := map[string]string{
		"INC-42: token leaked":                  "INC-42: token leaked",
		"  INC-42:\n\ttoken   leaked\r\n":       "INC-42: token leaked",
		"INC-42\x1b[2J\x1b]0;pwned\x07 cleared": "INC-42[2J]0;pwned cleared",
		"INC-42 \u202egnp.exe":                  "INC-42 gnp.exe",
		"":                                      "",
		strings.Repeat("x", 300):                strings.Repeat("x", 253) + "...",
		strings.Repeat("é", 200):                strings.Repeat("é", 126) + "...",
		"\x00\x01":                              "",
		"= SUM(A1)":                             "= SUM(A1)", // stored as written; CSV output guards it
		strings.Repeat("a ", 200)[:maxReasonBytes]: strings.TrimSpace(strings.Repeat("a ", 128)),
	}
	for in, want := range cases {
		got := revokeReason(in)
		if got != want {
			t.Errorf("revokeReason(%q) = %q, want %q", in, got, want)
		}
		if len(got) > maxReasonBytes {
			t.Errorf("revokeReason(%q) is %d bytes, more than %d", in, len(got), maxReasonBytes)
		}
	}
}

func TestCSVCellsAreNotFormulas(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com": "alice@example.com",
		"=1+2@example.com":  "'=1+2@example.com",
		"+1@x":              "'+1@x",
		"-1@x":              "'-1@x",
		"@SUM(1)":           "'@SUM(1)",
		"\t=1":              " =1",
		"a=1":               "a=1",
		"":                  "",
	} {
		if got := cell(in); got != want {
			t.Errorf("cell(%q) = %q, want %q", in, got, want)
		}
	}
}

// identityFrom decodes a ServiceIdentity written as YAML, as the API server would serve it.
func identityFrom(t *testing.T, doc string) *identity {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	id, err := decodeIdentity(u)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The governance fields of issue 15 are shown: owner state, the review interval in effect
// (status, shorter than spec here), the review schedule, the expiry cap, revocation evidence.
func TestGovernanceFieldsAreShownWhenPresent(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	id := identityFrom(t, `
apiVersion: scim.nhi.dev/v1alpha1
kind: ServiceIdentity
metadata: {name: billing-bot, namespace: team-a, uid: u-1}
spec:
  owner: alice@example.com
  targetRefs: [{kind: ScimTarget, name: okta}, {kind: ClusterScimTarget, name: entra}]
  review: {every: 4320h}
status:
  conditions:
  - {type: Ready, status: "False", reason: ReviewOverdue, message: overdue, lastTransitionTime: "2026-11-24T00:00:00Z"}
  owner: {state: Inactive, message: "alice@example.com is inactive in the directory"}
  review: {every: 2160h, lastReviewedAt: "2026-08-01T00:00:00Z", nextReviewAt: "2026-10-30T00:00:00Z"}
  expiresAt: "2027-01-01T00:00:00Z"
  expiryCappedBy: ScimTarget/team-a/okta
  targets:
  - {kind: ScimTarget, name: okta, state: Suspended, active: false, revocation: {confirmedAt: "2026-11-24T00:00:05Z", result: Inactive}}
  - {kind: ClusterScimTarget, name: entra, state: Error, message: unreachable}
`)
	r := recordOf(id, now)
	if r.OwnerState != "Inactive" || r.ReviewEvery != "2160h" || r.LastReviewedAt != "2026-08-01T00:00:00Z" ||
		r.NextReviewAt != "2026-10-30T00:00:00Z" || !r.ReviewOverdue || r.ExpiresAt != "2027-01-01T00:00:00Z" {
		t.Errorf("record = %+v", r)
	}
	if r.State != StateNotReady || r.Reason != "ReviewOverdue" {
		t.Errorf("state = %s (%s), want NotReady (ReviewOverdue)", r.State, r.Reason)
	}
	if rev := r.Targets[0].Revocation; rev == nil || rev.Result != "Inactive" || rfc3339(&rev.ConfirmedAt) != "2026-11-24T00:00:05Z" {
		t.Errorf("okta revocation = %+v", rev)
	}
	if r.Targets[1].Revocation != nil || r.Targets[1].AccountOff || !r.Targets[0].AccountOff || r.AccountOff {
		t.Errorf("targets = %+v", r.Targets)
	}

	var table bytes.Buffer
	if err := writeTable(&table, []Record{r}, false, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@example.com (Inactive)", "2026-10-30T00:00:00Z (overdue by 26d)", "2027-01-01T00:00:00Z (in 36d)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q:\n%s", want, table.String())
		}
	}
	var out bytes.Buffer
	if err := writeCSV(&out, []Record{r}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"team-a", "billing-bot", "billing-bot.team-a", "alice@example.com", "Inactive", "NotReady", "ReviewOverdue", "false",
		"ScimTarget/okta:Suspended;ClusterScimTarget/entra:Error", "2027-01-01T00:00:00Z", "2160h", "2026-08-01T00:00:00Z", "2026-10-30T00:00:00Z", "true",
		"false", "ClusterScimTarget/entra"}
	if strings.Join(rows[1], "|") != strings.Join(want, "|") {
		t.Errorf("csv row\n got %q\nwant %q", rows[1], want)
	}

	var why bytes.Buffer
	if err := writeWhy(&why, id, nil, nil, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Owner:         alice@example.com (owner Inactive: alice@example.com is inactive in the directory)",
		"Review:        every 2160h, last 2026-08-01T00:00:00Z, next 2026-10-30T00:00:00Z (overdue by 26d)",
		"revocation confirmed 2026-11-24T00:00:05Z (Inactive)",
		"Expires:       2027-01-01T00:00:00Z (in 36d), capped by ScimTarget/team-a/okta",
	} {
		if !strings.Contains(why.String(), want) {
			t.Errorf("why has no %q:\n%s", want, why.String())
		}
	}
}

func TestState(t *testing.T) {
	cases := []struct {
		name, doc, state, reason string
	}{
		{"no status", `{spec: {}}`, StatePending, ""},
		{"ready", `{status: {conditions: [{type: Ready, status: "True", reason: Provisioned}]}}`, StateReady, "Provisioned"},
		{"reconciling", `{status: {conditions: [{type: Ready, status: "False", reason: Progressing}, {type: Reconciling, status: "True", reason: Progressing}]}}`, StateReconciling, "Progressing"},
		{"not ready", `{status: {conditions: [{type: Ready, status: "False", reason: TargetUnreachable}]}}`, StateNotReady, "TargetUnreachable"},
		{"stalled beats ready", `{status: {conditions: [{type: Ready, status: "True", reason: Provisioned}, {type: Stalled, status: "True", reason: GuardrailViolation}]}}`, StateStalled, "GuardrailViolation"},
		{"review overdue", `{status: {conditions: [{type: Ready, status: "False", reason: ReviewOverdue}, {type: Stalled, status: "True", reason: ReviewOverdue}]}}`, StateSuspended, "ReviewOverdue"},
		{"owner inactive", `{status: {conditions: [{type: Stalled, status: "True", reason: OwnerInactive}]}}`, StateSuspended, "OwnerInactive"},
		{"suspended beats stalled", `{spec: {suspend: true}, status: {conditions: [{type: Stalled, status: "True", reason: X}]}}`, StateSuspended, "spec.suspend"},
		{"expired beats suspended", `{spec: {suspend: true}, status: {conditions: [{type: Expired, status: "True", reason: Expired}]}}`, StateExpired, "Expired"},
		{"expired condition false", `{status: {conditions: [{type: Expired, status: "False", reason: NotExpired}, {type: Ready, status: "True", reason: Ready}]}}`, StateReady, "Ready"},
		{"deleting beats all", `{metadata: {deletionTimestamp: "2026-11-25T00:00:00Z"}, spec: {suspend: true}, status: {conditions: [{type: Ready, status: "False", reason: Deprovisioning}]}}`, StateDeleting, "Deprovisioning"},
	}
	for _, c := range cases {
		id := identityFrom(t, c.doc)
		if s, r := id.state(); s != c.state || r != c.reason {
			t.Errorf("%s: state = %s (%s), want %s (%s)", c.name, s, r, c.state, c.reason)
		}
	}
}

// Every command decides "is the account off" with AccountOff alone: a Deprovisioned entry
// whose account deletionPolicy Orphan left active is not off, nor a target not reported on.
func TestTargetsUseAccountOff(t *testing.T) {
	id := identityFrom(t, `
apiVersion: scim.nhi.dev/v1alpha1
kind: ServiceIdentity
metadata: {name: bot, namespace: team-a}
spec:
  targetRefs: [{name: orphan}, {name: gone}, {name: suspended}, {name: failed}, {name: new}]
status:
  targets:
  - {kind: ScimTarget, name: orphan, id: u1, active: true, state: Deprovisioned, message: "Account left on the target (deletionPolicy Orphan)",
     revocation: {confirmedAt: "2026-12-07T06:00:00Z", result: Orphaned}}
  - {kind: ScimTarget, name: gone, id: u2, active: false, state: Deprovisioned, revocation: {confirmedAt: "2026-12-07T06:00:00Z", result: NotFound}}
  - {kind: ScimTarget, name: suspended, id: u3, active: false, state: Suspended}
  - {kind: ScimTarget, name: failed, id: u4, active: false, state: Error, message: group update failed}
`)
	want := map[string]bool{"orphan": false, "gone": true, "suspended": true, "failed": false, "new": false}
	rows := id.targets()
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v", rows)
	}
	for i, r := range rows {
		var entry *scimv1.IdentityTargetStatus
		if i < len(id.Status.Targets) {
			entry = &id.Status.Targets[i]
		}
		off, reason := entry.AccountOff()
		if r.AccountOff != want[r.Name] || r.AccountOff != off || r.Evidence != reason {
			t.Errorf("%s: accountOff %t (%q), want %t (AccountOff: %t, %q)", r.Name, r.AccountOff, r.Evidence, want[r.Name], off, reason)
		}
	}
	pending := unconfirmed(id)
	if len(pending) != 3 || !strings.HasPrefix(pending[0], "ScimTarget/orphan (Deprovisioned, active=true: Account left on the target (deletionPolicy Orphan)): deletionPolicy Orphan left the account as it was") {
		t.Errorf("unconfirmed = %q", pending)
	}
	if s := accountsSummary(rows); !strings.HasPrefix(s, "still active on 3 of 5 target(s): ScimTarget/orphan: deletionPolicy Orphan") {
		t.Errorf("summary = %q", s)
	}
	if r := recordOf(id, time.Now()); r.AccountOff || strings.Join(r.StillActiveOn, ",") != "ScimTarget/orphan,ScimTarget/failed,ScimTarget/new" ||
		r.accountCell() != "still active on 3 of 5" {
		t.Errorf("record: accountOff %t, stillActiveOn %q, cell %q", r.AccountOff, r.StillActiveOn, r.accountCell())
	}
}
