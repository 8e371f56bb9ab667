package scim

import (
	"errors"
	"fmt"
)

// ErrPageRepeated is a list whose next page starts with the same resource as the page before:
// the provider ignores startIndex (AWS IAM Identity Center pages with a cursor instead), and
// paging on would read the same page until a cap. It comes wrapped with ErrMalformedResponse.
var ErrPageRepeated = errors.New("the provider answered the same page again (it ignores startIndex)")

// morePages decides, after a page of a list, whether to read the next one; next is the
// startIndex it would ask for. totalResults decides when it is plausible. A provider that
// reports the page size as totalResults (some do) would end every list after its first
// page, so a total equal to this page's size while the page is full (as many resources as
// asked for) is not trusted: the next page is read, and the list ends on a short or empty
// page. A list of exactly one full page costs one more (empty) request; nothing else does.
// Without totalResults the list ends on an empty page. Not detectable: a provider that
// silently returns pages smaller than asked for *and* reports page totals; ask for pages no
// larger than its filter.maxResults.
func morePages(list *ListResponse, pageSize, next int) bool {
	n := len(list.Resources)
	if n == 0 {
		return false
	}
	if list.TotalResults <= 0 {
		return true
	}
	if next-1 < list.TotalResults {
		return true // the provider says there is more
	}
	return n >= pageSize && list.TotalResults == n
}

// repeatedPage reports a page that starts with the resource the previous page started with.
func repeatedPage(kind string, prev, page []Resource) error {
	if len(prev) == 0 || len(page) == 0 || page[0].ID() == "" || page[0].ID() != prev[0].ID() {
		return nil
	}
	return fmt.Errorf("SCIM GET /%s: %w: %w", kind, ErrMalformedResponse, ErrPageRepeated)
}
