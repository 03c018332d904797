package oauth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestOverlapTriesThePreviousClientOnce(t *testing.T) {
	t.Parallel()
	refused := &Error{Class: Permanent, Code: "invalid_client", Status: 401}
	certRefused := &Error{Class: Permanent, Code: CodeTLSClientRefused}
	grant := &Error{Class: Permanent, Code: "invalid_grant", Status: 400}
	down := &Error{Class: Transient, Code: "server_error", Status: 503}
	cur := Config{ClientSecret: "new", ClientKey: "new-key", ClientKeyID: "k2", Previous: &Config{ClientSecret: "old", ClientKey: "old-key", ClientKeyID: "k1"}}
	cases := []struct {
		name     string
		answers  map[string]error // by secret sent; nil: a token
		prev     bool
		wantSent string
		wantErr  error
		byPrev   bool
	}{
		{"new accepted", map[string]error{"new": nil}, true, "new", nil, false},
		{"new refused, old accepted", map[string]error{"new": refused, "old": nil}, true, "new old", nil, true},
		{"certificate refused, old accepted", map[string]error{"new": certRefused, "old": nil}, true, "new old", nil, true},
		{"both refused: the new refusal", map[string]error{"new": refused, "old": grant}, true, "new old", refused, false},
		{"old transient: the transient failure", map[string]error{"new": refused, "old": down}, true, "new old", down, false},
		{"another refusal: no retry", map[string]error{"new": grant, "old": nil}, true, "new", grant, false},
		{"no previous: no retry", map[string]error{"new": refused, "old": nil}, false, "new", refused, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cur
			if !tc.prev {
				cfg.Previous = nil
			}
			var sent []string
			tok, err := overlap(cfg, func(c Config) (*Token, error) {
				if c.Previous != nil {
					t.Fatal("a request was sent with a Previous")
				}
				sent = append(sent, c.ClientSecret)
				if c.ClientSecret == "old" && (c.ClientKey != "old-key" || c.ClientKeyID != "k1") {
					t.Fatalf("the previous client was sent with the current key material: %s %s", c.ClientKey, c.ClientKeyID)
				}
				if e := tc.answers[c.ClientSecret]; e != nil {
					return nil, e
				}
				return &Token{AccessToken: "at"}, nil
			})
			if got := fmt.Sprint(sent); got != fmt.Sprint(strings.Fields(tc.wantSent)) {
				t.Fatalf("sent %v, want %s", sent, tc.wantSent)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && tok.ByPrevious != tc.byPrev {
				t.Fatalf("ByPrevious = %v, want %v", tok.ByPrevious, tc.byPrev)
			}
		})
	}
}

func TestConfigStringHidesThePreviousClient(t *testing.T) {
	t.Parallel()
	cfg := Config{ClientSecret: "new-secret", Previous: &Config{ClientSecret: "old-secret-value"}}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)} {
		if strings.Contains(s, "old-secret-value") || strings.Contains(s, "new-secret") {
			t.Fatalf("a Config printed a secret: %s", s)
		}
	}
}

// invalid_request is a refused client only for a client assertion (a key id the
// server does not know yet, as fosite answers); for a client secret it is a malformed
// request, which the previous secret cannot fix.
func TestOverlapInvalidRequestOnlyForAssertions(t *testing.T) {
	t.Parallel()
	badRequest := &Error{Class: Permanent, Code: "invalid_request", Status: 400}
	for style, wantSent := range map[string]string{AuthStylePrivateKeyJWT: "new old", AuthStyleHeader: "new", AuthStyleBody: "new"} {
		cfg := Config{AuthStyle: style, ClientKeyID: "new", Previous: &Config{ClientKeyID: "old"}}
		var sent []string
		tok, err := overlap(cfg, func(c Config) (*Token, error) {
			sent = append(sent, c.ClientKeyID)
			if c.ClientKeyID == "new" {
				return nil, badRequest
			}
			return &Token{AccessToken: "at"}, nil
		})
		if got := strings.Join(sent, " "); got != wantSent {
			t.Errorf("%s: sent %q, want %q", style, got, wantSent)
		}
		if style == AuthStylePrivateKeyJWT && (err != nil || !tok.ByPrevious) {
			t.Errorf("%s: %v, want a token through the previous key", style, err)
		}
	}
}
