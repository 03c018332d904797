package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestExpiresInIsNeverBeforeTheIssueTime: whatever a JSON or form-encoded answer
// says in expires_in, a token's expiry is after its issue time and at most
// MaxLifetime after it: huge values and overflows (2^63−1, 1e30) are capped and say
// so; a negative or non-numeric value is a bad response; 0, empty or none takes the
// default lifetime; a fraction of a second is kept. (A form answer of 2^63−1 used to
// wrap to an expiry in 1736.)
func TestExpiresInIsNeverBeforeTheIssueTime(t *testing.T) {
	t.Parallel()
	const (
		jsonType = "application/json"
		formType = "application/x-www-form-urlencoded"
	)
	type want struct {
		lifetime time.Duration // 0: a bad response
		capped   bool
		assumed  bool
	}
	bad := want{}
	def := want{lifetime: DefaultLifetime, assumed: true}
	capped := want{lifetime: MaxLifetime, capped: true}
	tests := []struct {
		name, contentType, expiresIn string
		want                         want
	}{
		{"json int64 max", jsonType, `9223372036854775807`, capped},
		{"json a year and a second", jsonType, `31536001`, capped},
		{"json exactly a year", jsonType, `31536000`, want{lifetime: MaxLifetime}},
		{"json quoted int64 max", jsonType, `"9223372036854775807"`, capped},
		{"json quoted", jsonType, `"120"`, want{lifetime: 2 * time.Minute}},
		// x/oauth2 refuses a JSON expires_in that is not an integer before we see it.
		{"json exponent", jsonType, `1e30`, bad},
		{"json beyond int64", jsonType, `99999999999999999999999`, bad},
		{"json fraction", jsonType, `3600.5`, bad},
		{"json negative", jsonType, `-1`, bad},
		// x/oauth2 keeps its own copy in 32 bits: this one would read as 1 s.
		{"json negative wrapping", jsonType, `-9223372036854775807`, bad},
		{"json negative low bits 3600", jsonType, `-4294963696`, bad},
		{"json not a number", jsonType, `"soon"`, bad},
		{"json bool", jsonType, `true`, bad},
		{"json zero", jsonType, `0`, def},
		{"json null", jsonType, `null`, def},
		{"form int64 max", formType, `9223372036854775807`, capped},
		{"form beyond int64", formType, `99999999999999999999999`, capped},
		{"form exponent", formType, `1e30`, capped},
		{"form exponent with a point", formType, `1.0e30`, capped},
		{"form beyond float64", formType, `1e400`, capped},
		{"form a year and a second", formType, `31536001`, capped},
		{"form fraction", formType, `3600.5`, want{lifetime: 3600*time.Second + 500*time.Millisecond}},
		{"form tiny fraction", formType, `0.000000000001`, want{lifetime: time.Nanosecond}},
		{"form negative", formType, `-5`, bad},
		{"form negative huge", formType, `-9223372036854775808`, bad},
		{"form negative infinity", formType, `-1e400`, bad},
		{"form not a number", formType, `soon`, bad},
		{"form NaN", formType, `NaN`, bad},
		{"form infinity word", formType, `Inf`, bad},
		{"form hex", formType, `0x10`, bad},
		{"form zero", formType, `0`, def},
		{"form empty", formType, ``, def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"access_token":"a","token_type":"bearer","expires_in":` + tt.expiresIn + `}`
			if tt.contentType == formType {
				body = "access_token=a&token_type=bearer&expires_in=" + tt.expiresIn
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = w.Write([]byte(body))
			}))
			t.Cleanup(srv.Close)
			clock := newFakeClock()
			c := NewClient(ClientOptions{Now: clock.Now})
			cfg := Config{Grant: GrantClientCredentials, TokenURL: srv.URL, ClientID: "id"}
			tok, err := c.Mint(context.Background(), cfg, "")
			if tt.want == bad {
				if err == nil {
					t.Fatalf("accepted: expiry %s, issued %s", tok.Expiry, tok.IssuedAt)
				}
				wantError(t, err, Transient, CodeBadResponse)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tok.Expiry.After(tok.IssuedAt) {
				t.Fatalf("expiry %s not after the issue time %s", tok.Expiry, tok.IssuedAt)
			}
			if got := tok.Expiry.Sub(tok.IssuedAt); got != tt.want.lifetime || tok.LifetimeCapped != tt.want.capped ||
				(tok.AssumedLifetime != 0) != tt.want.assumed {
				t.Fatalf("lifetime %s capped %v assumed %s, want %s capped %v assumed %v",
					got, tok.LifetimeCapped, tok.AssumedLifetime, tt.want.lifetime, tt.want.capped, tt.want.assumed)
			}
		})
	}
}

// FuzzLifetime: no expires_in value gives a lifetime outside (0, MaxLifetime] (0
// meaning "none given") or an error together with a lifetime.
func FuzzLifetime(f *testing.F) {
	for _, seed := range []string{"3600", "0", "", "-1", "1e30", "9223372036854775807", "-9223372036854775808",
		"99999999999999999999999", "3600.5", "1e400", "-1e400", "NaN", "Inf", "0x10", "soon", " 60 ", "+60", "1e-400"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, capped, err := Lifetime(v)
		switch {
		case err != nil && (d != 0 || capped):
			t.Fatalf("%q: error %v with lifetime %s", v, err, d)
		case d < 0 || d > MaxLifetime:
			t.Fatalf("%q: lifetime %s", v, d)
		case capped && d != MaxLifetime:
			t.Fatalf("%q: capped to %s", v, d)
		}
	})
}
