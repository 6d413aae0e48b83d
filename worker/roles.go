package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/winchhq/winch/jobs"
)

// Roles says which roles each principal has. A command that declares roles
// in its manifest runs only for a principal that has one of them; with no
// roles configured, such a command runs for nobody. Commands that declare
// none run for everyone.
type Roles map[string][]string

// Check returns nil when principal may run a command that requires one of
// required.
func (r Roles) Check(principal, command string, required []string) error {
	if len(required) == 0 {
		return nil
	}
	for _, role := range r[principal] {
		if slices.Contains(required, role) {
			return nil
		}
	}
	return fmt.Errorf("%w: principal %s may not run %s: it needs one of the roles %s (the workers' WINCH_ROLES_FILE grants roles)",
		jobs.ErrForbidden, principal, command, strings.Join(required, ", "))
}

// Has reports whether principal has role.
func (r Roles) Has(principal, role string) bool { return slices.Contains(r[principal], role) }
