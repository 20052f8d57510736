<?php
// The video-chat demo's backend, written for these tests: what its auth.php and call.php do over CometQL.
//
//   php demo_backend.php auth <cometql port> <user id>     store the user's key in users_auth
//   php demo_backend.php call <cometql port> <user id>     add the user to conference room 101
//
// The demo's auth.php stores the key a browser logs in with; its call.php inserts a conference row,
// which makes the comet server push msg.sys_sipCall to that user.  Both build the statement by
// string concatenation with every value escaped by the link and put in single quotes, with no space
// before VALUES( and a space before the closing parenthesis.  This script sends the same SQL text,
// so the emulator meets the exact statements the demo sends (tests/compat/test_php_call.py).
//
// (The demo's call.php uses the ext/mysql name mysql_real_escape_string with mysqli's argument
// order; ext/mysql is gone since PHP 7, so a PHP 7+ deployment maps it to mysqli_real_escape_string,
// which is what this script calls.)
//
// Prints one JSON object: affected rows, error number and error text of the statement.

mysqli_report(MYSQLI_REPORT_OFF);

const DEV_ID = "15";
const PASSWORD = "CometQLPassword";

/** "INSERT INTO <table> (<columns>)VALUES('<v1>', '<v2>', ... );" with every value escaped. */
function demo_insert(mysqli $link, string $table, array $row): string
{
    $escaped = array_map(fn($value) => mysqli_real_escape_string($link, (string)$value), array_values($row));
    return "INSERT INTO " . $table . " (" . implode(", ", array_keys($row)) . ")VALUES('"
        . implode("', '", $escaped) . "' );";
}

[$_, $mode, $port, $user_id] = $argv;
$link = mysqli_connect("127.0.0.1", DEV_ID, PASSWORD, "CometQL_v1", (int)$port);
if (!$link) {
    fwrite(STDERR, mysqli_connect_error());
    exit(2);
}

if ($mode === "auth") {          // auth.php: the browser logs in with this key
    $sql = demo_insert($link, "users_auth", ["id" => $user_id, "hash" => "PassForUser" . $user_id]);
} elseif ($mode === "call") {    // call.php: join room 101 with the video profile
    $sql = demo_insert($link, "conference", [
        "name" => "101", "user_id" => $user_id, "caller_id" => $user_id, "message" => "{}", "profile" => "video",
    ]);
} else {
    fwrite(STDERR, "mode must be auth or call\n");
    exit(2);
}
mysqli_query($link, $sql);
echo json_encode(["affected_rows" => mysqli_affected_rows($link), "errno" => mysqli_errno($link),
                  "error" => mysqli_error($link)]), "\n";
mysqli_close($link);
