package plugin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
)

// Record is one identity in inventory's JSON and CSV output.
type Record struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UserName  string `json:"userName,omitempty"`
	Owner     string `json:"owner,omitempty"`
	// OwnerState is status.owner.state (Active, Inactive, Missing, Unchecked) when the operator
	// checks owners against a directory.
	OwnerState string      `json:"ownerState,omitempty"`
	State      string      `json:"state"`
	Reason     string      `json:"reason,omitempty"`
	Suspended  bool        `json:"suspended"`
	Targets    []targetRow `json:"targets"`
	// AccountOff is true only when every target showed the account off (targets[].accountOff,
	// on the target's own evidence); StillActiveOn names the targets where it is not.
	AccountOff    bool     `json:"accountOff"`
	StillActiveOn []string `json:"stillActiveOn,omitempty"`
	ExpiresAt     string   `json:"expiresAt,omitempty"`
	// ExpiryCappedBy names the target whose maxTTL shortened the lifetime.
	ExpiryCappedBy string `json:"expiryCappedBy,omitempty"`
	// ReviewEvery is spec.review.every; LastReviewedAt and NextReviewAt come from status.review.
	ReviewEvery    string `json:"reviewEvery,omitempty"`
	LastReviewedAt string `json:"lastReviewedAt,omitempty"`
	NextReviewAt   string `json:"nextReviewAt,omitempty"`
	ReviewOverdue  bool   `json:"reviewOverdue"`
	Deleting       bool   `json:"deleting"`

	expires, nextReview *time.Time
}

func recordOf(id *identity, now time.Time) Record {
	state, reason := id.state()
	r := Record{
		Namespace: id.Namespace, Name: id.Name, UserName: id.Status.UserName, Owner: id.Spec.Owner,
		OwnerState: id.ownerState(), State: state, Reason: reason, Suspended: id.Spec.Suspend,
		Targets: id.targets(), ReviewEvery: id.reviewEvery(), Deleting: id.DeletionTimestamp != nil,
		LastReviewedAt: rfc3339(id.lastReviewedAt()), NextReviewAt: rfc3339(id.nextReviewAt()),
		ExpiryCappedBy: id.Status.ExpiryCappedBy,
	}
	if r.UserName == "" {
		r.UserName = id.EffectiveUserName()
	}
	if t := id.expiresAt(); t != nil {
		r.expires = t
		r.ExpiresAt = t.Format(time.RFC3339)
	}
	if t := id.nextReviewAt(); t != nil && !t.IsZero() {
		v := t.UTC()
		r.nextReview = &v
		r.ReviewOverdue = !v.After(now)
	}
	for i := range r.Targets {
		r.Targets[i].Message = clean(r.Targets[i].Message, 1024)
	}
	for _, t := range stillActive(r.Targets) {
		r.StillActiveOn = append(r.StillActiveOn, t.Kind+"/"+t.Name)
	}
	r.AccountOff = len(r.Targets) > 0 && len(r.StillActiveOn) == 0
	return r
}

// accountCell is "off" when every target showed the account off, else "still active", with
// how many targets when only some did.
func (r Record) accountCell() string {
	switch {
	case len(r.Targets) == 0:
		return ""
	case r.AccountOff:
		return "off"
	case len(r.StillActiveOn) < len(r.Targets):
		return fmt.Sprintf("still active on %d of %d", len(r.StillActiveOn), len(r.Targets))
	}
	return "still active"
}

// targetsCell is "Kind/name:State" for each target, joined by sep.
func (r Record) targetsCell(sep string) string {
	parts := make([]string, 0, len(r.Targets))
	for _, t := range r.Targets {
		parts = append(parts, t.Kind+"/"+t.Name+":"+t.State)
	}
	return strings.Join(parts, sep)
}

func (r Record) ownerCell() string {
	if r.OwnerState == "" {
		return r.Owner
	}
	return fmt.Sprintf("%s (%s)", orDash(r.Owner), r.OwnerState)
}

// listRecords lists the identities of ns (all: metav1.NamespaceAll) as records sorted by
// namespace and name.
func listRecords(ctx context.Context, dyn dynamic.Interface, ns string, now time.Time) ([]Record, error) {
	ids, err := listIdentities(ctx, dyn, ns)
	if err != nil {
		return nil, err
	}
	records := make([]Record, 0, len(ids))
	for _, id := range ids {
		records = append(records, recordOf(id, now))
	}
	return records, nil
}

func newInventoryCommand(o *Options) *cobra.Command {
	var (
		output        string
		allNamespaces bool
	)
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List ServiceIdentities with owner, targets, whether the account is off, state, expiry and review due",
		Example: `  kubectl scim inventory -A
  kubectl scim inventory -n team-a -o csv > identities.csv
  kubectl scim inventory -A -o json | jq '.[] | select(.reviewOverdue)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table", "json", "csv":
			default:
				return fmt.Errorf("--output %q: use table, json or csv", output)
			}
			dyn, _, ns, err := o.clients()
			if err != nil {
				return err
			}
			if allNamespaces {
				ns = metav1.NamespaceAll
			}
			now := o.now()
			records, err := listRecords(cmd.Context(), dyn, ns, now)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				return writeJSON(o.Out, records)
			case "csv":
				return writeCSV(o.Out, records)
			}
			if len(records) == 0 {
				if allNamespaces {
					_, err = fmt.Fprintln(o.ErrOut, "No ServiceIdentities found.")
				} else {
					_, err = fmt.Fprintf(o.ErrOut, "No ServiceIdentities found in namespace %s.\n", ns)
				}
				return err
			}
			return writeTable(o.Out, records, allNamespaces, now)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "Output format: table, json or csv")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the identities of every namespace")
	return cmd
}

func writeJSON(w io.Writer, records []Record) error {
	if records == nil {
		records = []Record{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(records)
}

// csvHeader names inventory's CSV columns.
var csvHeader = []string{"namespace", "name", "userName", "owner", "ownerState", "state", "reason", "suspended",
	"targets", "expiresAt", "reviewEvery", "lastReviewedAt", "nextReviewAt", "reviewOverdue", "accountOff", "stillActiveOn"}

func writeCSV(w io.Writer, records []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	for _, r := range records {
		row := []string{r.Namespace, r.Name, r.UserName, r.Owner, r.OwnerState, r.State, r.Reason,
			fmt.Sprint(r.Suspended), r.targetsCell(";"), r.ExpiresAt, r.ReviewEvery, r.LastReviewedAt, r.NextReviewAt,
			fmt.Sprint(r.ReviewOverdue), fmt.Sprint(r.AccountOff), strings.Join(r.StillActiveOn, ";")}
		for i := range row {
			row[i] = cell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeTable(w io.Writer, records []Record, allNamespaces bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := "NAME\tOWNER\tTARGETS\tACCOUNT\tSTATE\tREASON\tEXPIRES\tREVIEW DUE"
	if allNamespaces {
		header = "NAMESPACE\t" + header
	}
	if _, err := fmt.Fprintln(tw, header); err != nil {
		return err
	}
	for _, r := range records {
		expires, review := "-", "-"
		if r.expires != nil {
			expires = r.ExpiresAt + " (" + relative(*r.expires, now) + ")"
		}
		if r.nextReview != nil {
			review = r.NextReviewAt
			if r.ReviewOverdue {
				review += " (overdue by " + age(*r.nextReview, now) + ")"
			} else {
				review += " (" + relative(*r.nextReview, now) + ")"
			}
		}
		cols := []string{r.Name, orDash(r.ownerCell()), orDash(r.targetsCell(",")), orDash(r.accountCell()), r.State, orDash(r.Reason), expires, review}
		if allNamespaces {
			cols = append([]string{r.Namespace}, cols...)
		}
		for i := range cols {
			cols[i] = strings.ReplaceAll(clean(cols[i], 256), "\t", " ")
		}
		if _, err := fmt.Fprintln(tw, strings.Join(cols, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}
