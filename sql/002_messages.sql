-- cim schema v2: messages. Applied to every shard database (im_0 .. im_3). Idempotent.
--
-- A message is stored once, in its author's outbox on shard(from_id), and referenced by one
-- lean row in every recipient's inbox on shard(recipient) (fan-out on write; no payload
-- copies). The outbox row is also the author's own inbox entry: from_seq is its position in
-- the author's inbox (0 when the entry is not in the author's inbox, e.g. API pushes), so a
-- 1:1 message costs two rows, not three. A user's inbox is the union of im_message_recv
-- (user_id, seq) and im_message_send (from_id, from_seq), both on shard(user), one seq counter
-- (im_user.max_seq) for both.

CREATE TABLE IF NOT EXISTS im_message_send (
    from_id       BIGINT UNSIGNED NOT NULL,   -- author (0 = the system account)
    server_msg_id BIGINT UNSIGNED NOT NULL,
    client_msg_id VARBINARY(64) NOT NULL,
    to_id         BIGINT UNSIGNED NOT NULL,   -- user (1:1) or group id
    session_type  TINYINT UNSIGNED NOT NULL,  -- 1 single, 2 group
    msg_type      TINYINT UNSIGNED NOT NULL,
    from_seq      BIGINT UNSIGNED NOT NULL,   -- author's inbox seq, 0 = not in the author's inbox
    client_type   TINYINT UNSIGNED NOT NULL DEFAULT 0,
    status        TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 0 normal, 11 recalled
    fanout        TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 0 recipients' inbox rows pending, 1 done
    created       INT UNSIGNED NOT NULL,
    msg_data      BLOB NOT NULL,
    PRIMARY KEY (from_id, server_msg_id),
    UNIQUE KEY uk_client (from_id, client_msg_id),
    KEY k_seq (from_id, from_seq),
    KEY k_session (from_id, session_type, to_id, server_msg_id),
    KEY k_fanout (fanout, server_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS im_message_recv (
    user_id       BIGINT UNSIGNED NOT NULL,
    seq           BIGINT UNSIGNED NOT NULL,
    server_msg_id BIGINT UNSIGNED NOT NULL,
    from_id       BIGINT UNSIGNED NOT NULL,   -- where the body is: im_message_send on shard(from_id)
    session_type  TINYINT UNSIGNED NOT NULL,
    session_id    BIGINT UNSIGNED NOT NULL,   -- as this user sees it: the peer, or the group
    msg_type      TINYINT UNSIGNED NOT NULL,
    status        TINYINT UNSIGNED NOT NULL DEFAULT 0,  -- 0 stored, 1 delivered (a device confirmed)
    created       INT UNSIGNED NOT NULL,
    PRIMARY KEY (user_id, seq),
    UNIQUE KEY uk_msg (user_id, server_msg_id),
    KEY k_session (user_id, session_type, session_id, server_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- read positions: everything <= read_msg_id in the session is read
CREATE TABLE IF NOT EXISTS im_session_read (
    user_id      BIGINT UNSIGNED NOT NULL,
    session_type TINYINT UNSIGNED NOT NULL,
    session_id   BIGINT UNSIGNED NOT NULL,
    read_msg_id  BIGINT UNSIGNED NOT NULL,
    updated      INT UNSIGNED NOT NULL,
    PRIMARY KEY (user_id, session_type, session_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO im_schema_version (version, applied) VALUES (2, UNIX_TIMESTAMP());
