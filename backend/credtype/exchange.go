// Token exchange (RFC 8693): the field every OAuth type takes that turns
// exchange/<name> on, and the rule its values and the path's parameters share.

package credtype

import "strings"

// FieldExchangeAudiences is the allow-list of exchange/<name>: the audience and
// resource values a token exchange of the credential may ask for. Empty: exchange off.
const FieldExchangeAudiences = "exchange_audiences"

// MaxExchangeTarget bounds one audience or resource value (a URI or a logical name).
const MaxExchangeTarget = 1024

// ExchangeTargetRule is the rule of an audience or resource value, in exchange_audiences
// and in the parameters of exchange/<name>.
const ExchangeTargetRule = "printable ASCII without spaces (a URI or a logical name), at most 1024 bytes"

func defineExchange() string {
	define(Field{Name: FieldExchangeAudiences, Type: FieldList, item: exchangeTargetItem, maxLen: MaxExchangeTarget,
		Rule: "list of " + ExchangeTargetRule + "; duplicates dropped",
		Description: "The audience and resource values exchange/<name> may ask for (RFC 8693 token exchange of this credential's access token); " +
			"empty: exchange is off for this credential."})
	return FieldExchangeAudiences
}

// exchangeTargetItem checks one audience or resource value.
func exchangeTargetItem(s string) ([]string, error) {
	if err := CheckExchangeTarget(s); err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// CheckExchangeTarget checks an audience or resource value against
// ExchangeTargetRule.
func CheckExchangeTarget(s string) error {
	if s == "" || len(s) > MaxExchangeTarget {
		return ruleError("must be " + ExchangeTargetRule)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return ruleError("must be " + ExchangeTargetRule)
		}
	}
	return nil
}

// ExchangeAudiences returns the credential's exchange_audiences (nil: exchange off).
func ExchangeAudiences(v *Values) []string {
	x, ok := v.Get(FieldExchangeAudiences)
	if !ok {
		return nil
	}
	l, _ := x.([]string)
	return l
}

// ScopeTokens splits a space-separated scope parameter into its tokens, checking each
// against the RFC 6749 scope-token syntax (as the scopes field does).
func ScopeTokens(s string) ([]string, error) {
	return scopeItems(strings.TrimSpace(s))
}
