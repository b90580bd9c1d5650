"""What leaves the process: redaction of the 验证码, text caps, formula-safe spreadsheets."""
