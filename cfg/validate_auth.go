package cfg

// auth checks an instance's authentication block (nil: none) against
// its VRRP version.
func (v *validator) auth(s *instanceSyntax, version int) Auth {
	a := s.Auth
	if a == nil {
		return Auth{}
	}
	var out Auth
	if v.required(a.Type.Set, block{Name: s.Name, DefRange: a.DefRange}, "vrrp_instance", "authentication.type") && a.Type.ok() {
		switch a.Type.Val {
		case AuthPass, AuthAH:
			out.Type = a.Type.Val
		default:
			v.errorf(a.Type.Range, `authentication type must be "pass" or "ah" (keepalived's PASS and AH), got %q`, a.Type.Val)
		}
	}
	if v.required(a.Password.Set, block{Name: s.Name, DefRange: a.DefRange}, "vrrp_instance", "authentication.password") && a.Password.ok() {
		out.Password = a.Password.Val
		switch {
		case out.Password == "":
			v.errorf(a.Password.Range, "authentication password must not be empty")
		case len(out.Password) > PasswordLen:
			v.warnf(a.Password.Range, "authentication password is longer than %d bytes: only %q is used, as keepalived does",
				PasswordLen, out.Password[:PasswordLen])
		}
	}
	if version != 2 {
		v.errorf(a.DefRange, "authentication needs VRRP version 2 (version 3 has none, RFC 5798); set version = 2, which carries IPv4 only")
	}
	return out
}
