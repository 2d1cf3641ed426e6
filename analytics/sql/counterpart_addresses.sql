-- One row per (message, counterpart address) in one month, with the address's domain class.
-- The counterpart of a sent message is each To/Cc address; of a received one, its From.
-- Domains are classed by contract.domains' suffix rule, through the functions the loader
-- registers (is_official_domain, is_public_domain, is_registration_domain): "hn.vnn.vn"
-- is public through "vnn.vn", "tc.danang.gov.vn" official through "danang.gov.vn";
-- official wins over public, and a registration sender's domain (social networks, banks)
-- is "other", never "public". Each distinct domain is classed once.
-- Inputs: messages. Parameters: $month_start, $month_end.
with

window_messages as (
    select mailbox, folder, role, uidvalidity, uid, message_id, sent_date,
           from_addr, to_addrs, cc_addrs
    from messages
    where sent_date >= $month_start and sent_date < $month_end
        and role not in ('drafts', 'trash', 'junk', 'all')
),

addresses as (
    select * exclude (from_addr, to_addrs, cc_addrs),
           unnest(list_concat(to_addrs, cc_addrs)) as address
    from window_messages
    where role = 'sent'
    union all
    select * exclude (from_addr, to_addrs, cc_addrs), from_addr as address
    from window_messages
    where role <> 'sent' and from_addr is not null
),

domains as (
    select distinct lower(split_part(address, '@', 2)) as domain
    from addresses
    where address like '%_@_%'
),

listed as (
    select
        domain,
        is_official_domain(domain) as official,
        is_public_domain(domain) as public,
        is_registration_domain(domain) as registration_sender
    from domains
),

classes as (
    select
        domain,
        case
            when official then 'official'
            -- services that send registration mail (facebookmail.com is on the free-mail
            -- list) are not anyone's mailbox: never "public" counterparts
            when registration_sender then 'other'
            when public then 'public'
            else 'other'
        end as domain_class,
        registration_sender
    from listed
),

final as (
    select
        a.*,
        coalesce(c.domain_class, 'other') as domain_class,
        coalesce(c.registration_sender, false) as registration_sender
    from addresses a
    left join classes c on c.domain = lower(split_part(a.address, '@', 2))
)

select * from final
