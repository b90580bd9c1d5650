-- JXC002 药品入库信息上传 for one business day (purchases 11, 盘盈 13, patient returns 15).
SELECT b.bill_no || '-' || b.line_no                     AS serial_no,
       d.insurance_item_code                            AS insurance_item_code,
       d.name                                           AS hospital_item_name,
       d.mapping_serial_no                              AS mapping_serial_no,
       '0'                                              AS split_flag,
       d.pack_unit                                      AS unit,
       b.operator                                       AS operator_name,
       b.kind                                           AS inbound_type,
       b.price                                          AS purchase_price,
       b.qty                                            AS quantity,
       b.at                                             AS event_time,
       b.supplier                                       AS supplier_name,
       b.delivery_note                                  AS delivery_note_no,
       b.invoice                                        AS invoice_no,
       b.lot_no                                         AS lot_no,
       b.expiry_date                                    AS expiry_date,
       d.manufacturer                                   AS manufacturer,
       d.approval_no                                    AS approval_no,
       b.return_of                                      AS original_serial_no
FROM inbound_bill b
JOIN drug d ON d.drug_id = b.drug_id
WHERE substr(b.at, 1, 10) = '{{ business_date }}'
ORDER BY b.bill_no, b.line_no
