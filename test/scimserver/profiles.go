package scimserver

// Quirks are the ways real SCIM service providers depart from RFC 7643/7644 that a client
// must survive. The zero value is the RFC behaviour. Each field is one behaviour; a Profile
// names a set of them after a provider (or a family of providers) that has them. PROFILES.md
// lists every profile with its behaviours and sources.
type Quirks struct {
	// PatchNoContent: a successful PATCH answers 204 No Content with no body (RFC 7644
	// §3.5.2 allows it only when the attributes were not asked for; many providers always
	// do it), so the client learns neither the new state nor the new version.
	PatchNoContent bool
	// PatchUnsupported: PATCH answers 501 Not Implemented on every resource.
	PatchUnsupported bool
	// TotalResultsPageSize: a list's totalResults is the number of resources on this page,
	// not the number of matches, so a client that trusts it stops after the first page.
	TotalResultsPageSize bool
	// NoLocation: POST answers 201 without a Location header (meta.location is still sent).
	NoLocation bool
	// NoETags: no ETag header and no meta.version are sent, and If-Match is ignored.
	NoETags bool
	// ETagBodyHash: the ETag (and meta.version) is a strong hash of the resource's
	// attributes, `"<hex>"`, instead of a weak revision counter; If-Match compares with it.
	ETagBodyHash bool
	// CaseSensitiveEq: string comparisons in filters (userName eq included, though RFC
	// 7643 makes userName caseExact=false) are case-sensitive, while userName uniqueness
	// stays case-insensitive: a create answers 409 for "Bot" when "bot" exists, and
	// `userName eq "Bot"` finds nothing.
	CaseSensitiveEq bool
	// EqOnly: filters may use only `eq`, joined by `and` (AWS IAM Identity Center); any
	// other operator (sw, co, pr, or, not...) answers 400 invalidFilter.
	EqOnly bool
	// MalformedFilter: how a filter that does not parse is answered. The zero value,
	// FilterFailure400, is the RFC's 400 invalidFilter.
	MalformedFilter FilterFailure
	// PutMerges: PUT merges the given attributes into the stored resource (attributes left
	// out are kept) instead of replacing it (RFC 7644 §3.5.1).
	PutMerges bool
	// RemoveValueListWipes: a member removal sent Entra-style, `{"op":"remove",
	// "path":"members","value":[{"value":"<id>"}]}`, removes every member of the group
	// (RFC 7644 §3.5.2.2 read literally: a remove without a filter clears the attribute;
	// the value list is ignored). Without the quirk only the listed members are removed.
	// The RFC form, path `members[value eq "<id>"]`, always removes only that member.
	RemoveValueListWipes bool
	// StaleMembers: deleting a User leaves it in the members of its groups. Without the
	// quirk the server removes it from every group, as RFC 7643 §4.2 expects of a provider
	// that keeps referential integrity.
	StaleMembers bool
	// MaxMemberOps: at most this many member changes (each member added or removed counts
	// one) per PATCH of a Group; more answer 400 (AWS IAM Identity Center allows 100).
	// 0: no limit.
	MaxMemberOps int
	// SPCAdvertisesAll: /ServiceProviderConfig claims patch, bulk, filter, sort, etag and
	// changePassword are all supported, whatever the server really does (a lying SPC; see
	// the lying-spc profile).
	SPCAdvertisesAll bool
	// IgnoresAttributes: the attributes / excludedAttributes query parameters are ignored
	// (the full resource is returned).
	IgnoresAttributes bool
	// IgnoresStartIndex: startIndex is ignored on lists: every page starts at the first
	// match (AWS IAM Identity Center pages with a cursor instead).
	IgnoresStartIndex bool
	// MaxPageSize caps the resources per list page (and the SPC's filter.maxResults);
	// 0 means the server's default of 200.
	MaxPageSize int
	// CursorPaging: lists page with a cursor (RFC 9865): a request with the `cursor` query
	// parameter (empty for the first page) is answered with `nextCursor` while more resources
	// follow, and the ServiceProviderConfig advertises `pagination.cursor`. A cursor the server
	// did not issue is 400 invalidCursor.
	CursorPaging bool
}

// FilterFailure is how a server answers a filter it cannot parse.
type FilterFailure int

const (
	// FilterFailure400 answers 400 with scimType invalidFilter (RFC 7644 §3.4.2.2).
	FilterFailure400 FilterFailure = iota
	// FilterFailureUnfiltered answers 200 with the unfiltered list (every resource, paged):
	// a client that trusts it sees every account as a match.
	FilterFailureUnfiltered
	// FilterFailureEmpty answers 200 with an empty list: a client that trusts it sees no
	// account at all.
	FilterFailureEmpty
	// FilterFailure500 answers 500 Internal Server Error.
	FilterFailure500
)

// Profile is a named set of quirks.
type Profile struct {
	Name        string
	Description string
	Quirks      Quirks
}

// Profiles returns every named profile, "rfc" (no quirks) first. PROFILES.md documents each.
func Profiles() []Profile {
	return []Profile{
		{Name: "rfc", Description: "RFC 7643/7644 as written: no quirks."},
		{
			Name: "aws-identity-center",
			Description: "AWS IAM Identity Center's SCIM implementation as documented in its developer guide: " +
				"filters with eq (and and) only, PATCH answers 204, no ETags, at most 100 member changes per PATCH, " +
				"startIndex, attributes and excludedAttributes ignored, pages of at most 100.",
			Quirks: Quirks{
				EqOnly: true, PatchNoContent: true, NoETags: true, MaxMemberOps: 100,
				IgnoresStartIndex: true, IgnoresAttributes: true, MaxPageSize: 100,
			},
		},
		{
			Name: "cursor-paging",
			Description: "Lists page with a cursor (RFC 9865), advertised in the ServiceProviderConfig; " +
				"startIndex is ignored, so index paging sees the first page again and again.",
			Quirks: Quirks{CursorPaging: true, IgnoresStartIndex: true},
		},
		{
			Name:        "scim2-204",
			Description: "PATCH answers 204 No Content without the resource.",
			Quirks:      Quirks{PatchNoContent: true},
		},
		{
			Name:        "case-sensitive-filters",
			Description: "String filters (userName eq included) match case-sensitively; uniqueness stays case-insensitive.",
			Quirks:      Quirks{CaseSensitiveEq: true},
		},
		{
			Name: "lying-spc",
			Description: "The ServiceProviderConfig advertises patch, bulk, filter, sort, etag and changePassword, " +
				"but PATCH answers 501 and no ETags are sent (If-Match is ignored).",
			Quirks: Quirks{SPCAdvertisesAll: true, PatchUnsupported: true, NoETags: true},
		},
		{
			Name:        "entra-groups",
			Description: "A member removal sent as an Entra-style value list (path members, value [{value: id}]) removes every member of the group.",
			Quirks:      Quirks{RemoveValueListWipes: true},
		},
		{
			Name:        "put-merges",
			Description: "PUT merges the given attributes into the resource instead of replacing it.",
			Quirks:      Quirks{PutMerges: true},
		},
		{
			Name: "sloppy-lists",
			Description: "totalResults is the page size, POST sends no Location header, and a malformed filter " +
				"answers 200 with the unfiltered list.",
			Quirks: Quirks{TotalResultsPageSize: true, NoLocation: true, MalformedFilter: FilterFailureUnfiltered},
		},
		{
			Name:        "stale-members",
			Description: "A deleted User stays in the members of its groups.",
			Quirks:      Quirks{StaleMembers: true},
		},
		{
			Name:        "etag-body-hash",
			Description: "The ETag is a strong hash of the resource body instead of a revision counter.",
			Quirks:      Quirks{ETagBodyHash: true},
		},
		{
			Name:        "malformed-filter-500",
			Description: "A malformed filter answers 500 instead of 400 invalidFilter.",
			Quirks:      Quirks{MalformedFilter: FilterFailure500},
		},
	}
}

// ProfileNamed returns the profile with this name.
func ProfileNamed(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// Option configures a Server at New.
type Option func(*Server)

// WithProfile starts the server with the profile's quirks (SetQuirks changes them later).
func WithProfile(p Profile) Option {
	return func(s *Server) { s.quirks = p.Quirks }
}

// WithAgents also serves the Agent resource type at /Agents (draft-abbey-scim-agent-extension-00,
// see agents.go), advertised in /ResourceTypes, /Schemas and the ServiceProviderConfig's
// agentExtension. Without it /ResourceTypes lists User and Group only.
func WithAgents() Option {
	return func(s *Server) { s.agents = true }
}

// WithWZDKAgents serves /Agents as WithAgents does, with the Agent schema of
// draft-wzdk-scim-agent-resource-00 (AgentSchemaWZDK: named by agentUserName, displayName and
// active required, owners as references to Users).
func WithWZDKAgents() Option {
	return func(s *Server) { s.agents, s.wzdk = true, true }
}

// SetQuirks changes the server's behaviour at run time; safe while requests are served.
func (s *Server) SetQuirks(q Quirks) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.quirks = q
}

// Quirks returns the behaviours in effect.
func (s *Server) Quirks() Quirks {
	if s == nil {
		return Quirks{}
	}
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	return s.quirks
}
