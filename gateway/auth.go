package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/goccy/go-yaml"

	"github.com/winchhq/winch/schema"
)

// Identity is who a request comes from, as its credentials prove.
type Identity struct {
	Principal string   `json:"principal"`
	Roles     []string `json:"roles"`
	// Via says how it was proven: "token" or "oidc".
	Via string `json:"via"`
}

// Has reports whether the identity has role.
func (id Identity) Has(role string) bool { return slices.Contains(id.Roles, role) }

// Errors of authentication; each becomes a 401.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("credentials not accepted")
)

// Token is one entry of the tokens file: the SHA-256 of a bearer token
// (never the token itself) and who holds it.
type Token struct {
	SHA256    string   `yaml:"sha256" json:"sha256"`
	Principal string   `yaml:"principal" json:"principal"`
	Roles     []string `yaml:"roles" json:"roles"`
}

// Tokens authenticates bearer tokens by their SHA-256: the gateway keeps no
// token, so its configuration leaks none.
type Tokens struct {
	byHash map[[sha256.Size]byte]Identity
}

// HashToken is the hex SHA-256 of a token, as the tokens file holds it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewTokens checks entries: each hash 64 hex digits, each principal valid
// (it becomes the last token of a NATS subject), no hash twice.
func NewTokens(entries []Token) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Identity{}}
	for i, e := range entries {
		raw, err := hex.DecodeString(strings.ToLower(e.SHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("token %d (%s): sha256 must be 64 hex digits, the SHA-256 of the token (printf %%s \"$TOKEN\" | sha256sum)", i+1, e.Principal)
		}
		if !schema.ValidPrincipal(e.Principal) {
			return nil, fmt.Errorf("token %d: principal %q is not valid: letters, digits, '-', '_' or '@'", i+1, e.Principal)
		}
		key := [sha256.Size]byte(raw)
		if _, dup := t.byHash[key]; dup {
			return nil, fmt.Errorf("token %d (%s): the same token hash is listed twice", i+1, e.Principal)
		}
		t.byHash[key] = Identity{Principal: e.Principal, Roles: e.Roles, Via: "token"}
	}
	return t, nil
}

// LoadTokens reads a tokens file: a YAML (or JSON) list of
// {sha256, principal, roles}.
func LoadTokens(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	var entries []Token
	if err := yaml.UnmarshalWithOptions(data, &entries, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("tokens file %s: %s (want a list of {sha256, principal, roles})", path, yaml.FormatError(err, false, false))
	}
	return entries, nil
}

// ParseTokensEnv reads WINCH_TOKENS: entries separated by spaces, commas
// or new lines, each SHA256:PRINCIPAL[:ROLE+ROLE...].
func ParseTokensEnv(s string) ([]Token, error) {
	var out []Token
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\n' || r == ',' || r == '\t' }) {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("WINCH_TOKENS: %q: want SHA256:PRINCIPAL or SHA256:PRINCIPAL:ROLE+ROLE", redactHash(f))
		}
		t := Token{SHA256: parts[0], Principal: parts[1]}
		if len(parts) == 3 && parts[2] != "" {
			t.Roles = strings.Split(parts[2], "+")
		}
		out = append(out, t)
	}
	return out, nil
}

func redactHash(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

// Lookup returns the identity of token. The comparison is of hashes, in
// constant time per entry, so a caller cannot time its way to a token.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	if t == nil {
		return Identity{}, false
	}
	sum := sha256.Sum256([]byte(token))
	for h, id := range t.byHash {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			return id, true
		}
	}
	return Identity{}, false
}

// OIDCConfig verifies OpenID Connect ID tokens from one issuer.
type OIDCConfig struct {
	Issuer string
	// Audience is the client id the tokens must be issued to.
	Audience string
	// PrincipalClaim names the claim that is the principal (default "sub").
	PrincipalClaim string
	// RolesClaim names a claim holding a list of roles (default "roles").
	RolesClaim string
}

// oidcVerifier checks ID tokens against the issuer's keys.
type oidcVerifier struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
}

// newOIDC discovers the issuer (its keys are fetched, and refreshed, as
// tokens arrive).
func newOIDC(ctx context.Context, cfg OIDCConfig) (*oidcVerifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("WINCH_OIDC_AUDIENCE is required with WINCH_OIDC_ISSUER: the client id ID tokens are issued to")
	}
	if cfg.PrincipalClaim == "" {
		cfg.PrincipalClaim = "sub"
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "roles"
	}
	// The provider keeps this context to fetch the issuer's keys as they
	// rotate, for the gateway's whole life: not the start's deadline.
	keep := oidc.ClientContext(context.WithoutCancel(ctx), &http.Client{Timeout: 10 * time.Second})
	p, err := oidc.NewProvider(keep, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC issuer %s: %w", cfg.Issuer, err)
	}
	return &oidcVerifier{cfg: cfg, verifier: p.Verifier(&oidc.Config{ClientID: cfg.Audience})}, nil
}

func (o *oidcVerifier) verify(ctx context.Context, raw string) (Identity, error) {
	tok, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: ID token: %w", ErrBadCredentials, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: ID token claims: %w", ErrBadCredentials, err)
	}
	p, _ := claims[o.cfg.PrincipalClaim].(string)
	if !schema.ValidPrincipal(p) {
		return Identity{}, fmt.Errorf("%w: the ID token's claim %q (%q) is not a valid principal (letters, digits, '-', '_', '@'): set WINCH_OIDC_PRINCIPAL_CLAIM to a claim that is",
			ErrBadCredentials, o.cfg.PrincipalClaim, p)
	}
	id := Identity{Principal: p, Via: "oidc"}
	if list, ok := claims[o.cfg.RolesClaim].([]any); ok {
		for _, r := range list {
			if s, ok := r.(string); ok {
				id.Roles = append(id.Roles, s)
			}
		}
	}
	return id, nil
}

// authenticator proves who a request is from.
type authenticator struct {
	tokens *Tokens
	oidc   *oidcVerifier
}

// looksLikeJWT: three base64url parts; tokens from the file are opaque.
func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

func (a *authenticator) authenticate(ctx context.Context, header string) (Identity, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if header == "" {
		return Identity{}, fmt.Errorf("%w: send Authorization: Bearer <token>", ErrNoCredentials)
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return Identity{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrBadCredentials)
	}
	token = strings.TrimSpace(token)
	if id, ok := a.tokens.Lookup(token); ok {
		return id, nil
	}
	if a.oidc != nil && looksLikeJWT(token) {
		return a.oidc.verify(ctx, token)
	}
	return Identity{}, fmt.Errorf("%w: the token is not known (tokens are listed by their SHA-256 in WINCH_TOKENS_FILE or WINCH_TOKENS)", ErrBadCredentials)
}
