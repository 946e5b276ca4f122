-- What the statement returns: where each appended event landed.
SELECT aggregate_id, position, transaction_id FROM appended
