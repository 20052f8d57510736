<?php
// PHP mysqli against the CometQL server, as the video-chat demo's auth.php uses it (tests/compat/test_cometql_clients.py).
//
//   php cometql_mysqli.php <port> <user_id> <user_key>
//
// Runs the common statements on one connection, then reconnects and reads the row back, and prints
// one JSON object on stdout.  The users_auth INSERT has the text the video-chat demo's auth.php
// sends (see tests/compat/demo_backend.php):
//
//   mysqli_query($link, "INSERT INTO users_auth (id, hash)VALUES('" . mysqli_real_escape_string( $link, $user_id ) . "', '" . mysqli_real_escape_string( $link, $user_key ) . "' );");
//
// Errors are reported through mysqli_errno()/mysqli_error() (exceptions off), so the script never dies
// half-way; a failed connect is reported as {"connect_errno":..., "connect_error":...}.

mysqli_report(MYSQLI_REPORT_OFF);

[$_, $port, $user_id, $user_key] = $argv;
$port = (int)$port;

function open_link(int $port)
{
    $link = mysqli_init();
    mysqli_options($link, MYSQLI_OPT_CONNECT_TIMEOUT, 5);
    mysqli_options($link, MYSQLI_OPT_READ_TIMEOUT, 5);
    if (!@mysqli_real_connect($link, "127.0.0.1", "1", "CometQLPassword", "CometQL_v1", $port)) {
        echo json_encode(["connect_errno" => mysqli_connect_errno(), "connect_error" => mysqli_connect_error()]), "\n";
        exit(0);
    }
    return $link;
}

// The answer to one statement, in the shape of the parity corpus (kind rows / ok / error).
function answer($link, $result): array
{
    if ($result === false) {
        return ["kind" => "error", "errno" => mysqli_errno($link), "message" => mysqli_error($link),
                "sqlstate" => mysqli_sqlstate($link)];
    }
    if ($result === true) {
        return ["kind" => "ok", "affectedRows" => mysqli_affected_rows($link),
                "insertId" => mysqli_insert_id($link)];
    }
    $fields = [];
    foreach (mysqli_fetch_fields($result) as $f) {
        $fields[] = [$f->name, $f->type];
    }
    $rows = mysqli_fetch_all($result, MYSQLI_NUM);
    mysqli_free_result($result);
    return ["kind" => "rows", "fields" => $fields, "rows" => $rows];
}

function run($link, string $sql): array
{
    return answer($link, mysqli_query($link, $sql));
}

$out = [];
$link = open_link($port);
$out["server_info"] = mysqli_get_server_info($link);
$out["show_tables"] = run($link, "SHOW TABLES");
$out["escaped_before"] = mysqli_real_escape_string($link, "it's");

// --- the demo's auth.php statement ---
$result = mysqli_query($link, "INSERT INTO users_auth (id, hash)VALUES('" . mysqli_real_escape_string( $link, $user_id ) . "', '" . mysqli_real_escape_string( $link, $user_key ) . "' );");
$out["auth_insert"] = answer($link, $result);
// after an INSERT the server's OK status decides how mysqli escapes (spec 4.1)
$out["escaped_after_insert"] = mysqli_real_escape_string($link, "it's");

$out["auth_select"] = run($link, "SELECT * FROM users_auth WHERE id = " . (int)$user_id);
$out["pipes_insert"] = run($link, "INSERT INTO pipes_messages (name, event, message) VALUES ('web_test', 'ev', 'hello')");
$out["pipes_select"] = run($link, "SELECT * FROM pipes WHERE name = 'web_test'");
$out["error"] = run($link, "SELECT * FROM pipes");
$out["syntax_error"] = run($link, "SELECT 1");
$out["ping_after_error"] = mysqli_ping($link);
$out["set_names"] = mysqli_set_charset($link, "utf8");
mysqli_close($link);

// --- reconnect: the row is still there ---
$link = open_link($port);
$out["reconnect_select"] = run($link, "SELECT * FROM users_auth WHERE id = " . (int)$user_id);
mysqli_close($link);

echo json_encode($out), "\n";
