# netlink-ops.awk — reads `strace -f -e trace=socket,sendmsg,sendto,openat -e write=all` output
# of a program and prints, in
# order, one line per request that CHANGES the node:
#   IPVS <cmd>     generic netlink to IPVS: NEW_SERVICE, SET_DEST, SET_CONFIG, FLUSH, …
#   ROUTE <type>   rtnetlink: NEWLINK, DELLINK, SETLINK, NEWADDR, DELADDR, NEWROUTE, DELROUTE
#   SYSCTL <path>  a /proc/sys file opened for writing
# Reads (dumps, GET_*) print nothing. The lane uses it to prove "no change" and ordering
# independently of what the program says about itself.

function hexval(h,   d) {
  d = "0123456789abcdef"
  return (index(d, substr(h, 1, 1)) - 1) * 16 + index(d, substr(h, 2, 1)) - 1
}
function flush(   i, len, type, cmd) {
  i = 0
  while (sock != "" && i + 16 <= nbytes) {
    len = hexval(bytes[i+1]) * 256 + hexval(bytes[i])
    type = hexval(bytes[i+5]) * 256 + hexval(bytes[i+4])
    if (len < 16) break
    if (sock == "ROUTE" && (type in RT)) print "ROUTE " RT[type]
    if (sock == "GENERIC" && type != 16 && i + 16 < nbytes) {
      cmd = hexval(bytes[i+16])
      if (cmd in IPVS) print "IPVS " IPVS[cmd]
    }
    i += int((len + 3) / 4) * 4
  }
  sock = ""; nbytes = 0
}
BEGIN {
  RT[16] = "NEWLINK"; RT[17] = "DELLINK"; RT[19] = "SETLINK"; RT[20] = "NEWADDR"
  RT[21] = "DELADDR"; RT[24] = "NEWROUTE"; RT[25] = "DELROUTE"
  IPVS[1] = "NEW_SERVICE"; IPVS[2] = "SET_SERVICE"; IPVS[3] = "DEL_SERVICE"
  IPVS[5] = "NEW_DEST"; IPVS[6] = "SET_DEST"; IPVS[7] = "DEL_DEST"
  IPVS[9] = "NEW_DAEMON"; IPVS[10] = "DEL_DAEMON"; IPVS[12] = "SET_CONFIG"
  IPVS[14] = "SET_INFO"; IPVS[16] = "ZERO"; IPVS[17] = "FLUSH"
}
# the pid of a line (strace -f prefixes it) and the first argument of its call
function pid_of(line) { return (line ~ /^[0-9]+ /) ? line + 0 : 0 }
function fd_of(line,   a) { a = line; sub(/^[^(]*\(/, "", a); return a + 0 }
# netlink sockets by pid and fd: socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_GENERIC) = 4
/^([0-9]+ +)?socket\(AF_NETLINK,/ {
  flush()
  r = $0; sub(/.*= /, "", r)
  kind = ($0 ~ /NETLINK_ROUTE/) ? "ROUTE" : ($0 ~ /NETLINK_GENERIC/) ? "GENERIC" : "OTHER"
  if (r + 0 >= 0) SOCK[pid_of($0) " " (r + 0)] = kind
  next
}
/^([0-9]+ +)?(sendmsg|sendto|sendmmsg)\(/ {
  flush()
  sock = SOCK[pid_of($0) " " fd_of($0)]
  next
}
/^([0-9]+ +)?(open|openat)\(.*"\/proc\/sys\// && /O_WRONLY|O_RDWR/ && !/= -1/ {
  flush()
  p = $0; sub(/^[^"]*"/, "", p); sub(/".*/, "", p)
  print "SYSCTL " p
  next
}
/^ \| [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]  / {
  if (sock == "") next
  hex = substr($0, 11, 49)
  n = split(hex, parts, /[ ]+/)
  for (k = 1; k <= n; k++) if (parts[k] ~ /^[0-9a-f][0-9a-f]$/) bytes[nbytes++] = parts[k]
  next
}
/^([0-9]+ +)?[a-z_0-9]+\(/ { flush() }
END { flush() }
