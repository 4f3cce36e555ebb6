package loki

import "net/url"

// URLHasPassword reports whether the push URL raw carries a password in
// its userinfo, which every local user can read wherever the URL is a
// command-line argument (/proc/<pid>/cmdline).
func URLHasPassword(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}
