// Text from elsewhere (a member's machine name, a file name) printed on a terminal.

/** Control characters (C0, DEL, C1) shown as '?': no escape sequence reaches the operator's terminal. */
export const printable = (s: string): string => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
