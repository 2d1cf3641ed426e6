"""Validate EWS SOAP body elements against Microsoft's messages.xsd/types.xsd with lxml.

Usage:  python validate_demo.py            (needs lxml; exchangelib optional)

The schema is compiled once from ews_all.xsd, a local wrapper that
  1. imports the xml: namespace from the local xml.xsd (types.xsd imports that
     namespace without a schemaLocation, and refs xml:lang), and
  2. imports types.lxml.xsd (types.xsd with the one UPA fix libxml2 needs, see
     make_lxml_types.py) before messages.xsd, so messages.xsd's own
     <xs:import schemaLocation="types.xsd"/> is skipped by libxml2 as
     "namespace already imported".
Validation of a single body element works because m:SyncFolderItems,
m:SyncFolderItemsResponse, m:FindFolder, m:FindFolderResponse ... are global
elements in messages.xsd: schema.validate(elem) treats elem as the document root.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS = f'xmlns:m="{M}" xmlns:t="{T}"'


def load_schema() -> etree.XMLSchema:
    if not (HERE / "types.lxml.xsd").exists():
        import make_lxml_types

        make_lxml_types.main()
    return etree.XMLSchema(etree.parse(str(HERE / "ews_all.xsd")))


SCHEMA = load_schema()


# (a) SyncFolderItems request, as exchangelib 5.6 SyncFolderItems.get_payload() builds it
SYNC_REQ_DISTINGUISHED = f"""
<m:SyncFolderItems {NS}>
  <m:ItemShape>
    <t:BaseShape>IdOnly</t:BaseShape>
    <t:AdditionalProperties>
      <t:FieldURI FieldURI="item:DateTimeReceived"/>
      <t:FieldURI FieldURI="item:Subject"/>
      <t:FieldURI FieldURI="message:IsRead"/>
    </t:AdditionalProperties>
  </m:ItemShape>
  <m:SyncFolderId>
    <t:DistinguishedFolderId Id="inbox">
      <t:Mailbox>
        <t:EmailAddress>user@example.com</t:EmailAddress>
        <t:RoutingType>SMTP</t:RoutingType>
        <t:MailboxType>Mailbox</t:MailboxType>
      </t:Mailbox>
    </t:DistinguishedFolderId>
  </m:SyncFolderId>
  <m:MaxChangesReturned>512</m:MaxChangesReturned>
  <m:SyncScope>NormalItems</m:SyncScope>
</m:SyncFolderItems>"""

SYNC_REQ_FOLDERID = f"""
<m:SyncFolderItems {NS}>
  <m:ItemShape>
    <t:BaseShape>IdOnly</t:BaseShape>
    <t:AdditionalProperties>
      <t:FieldURI FieldURI="item:DateTimeReceived"/>
    </t:AdditionalProperties>
  </m:ItemShape>
  <m:SyncFolderId><t:FolderId Id="AAMkADk=" ChangeKey="AQAAAA=="/></m:SyncFolderId>
  <m:SyncState>H4sIAAAAAAAEAO29B2AcSZYlJi9tynt/SvVK1+B0oQiAYBMk2JBAEOzBiM3mkuwdaUcjKasqgcplVmVdZhZAzO2dvPfee++999577733</m:SyncState>
  <m:MaxChangesReturned>512</m:MaxChangesReturned>
  <m:SyncScope>NormalItems</m:SyncScope>
</m:SyncFolderItems>"""

# (b) SyncFolderItemsResponse
SYNC_RESP = f"""
<m:SyncFolderItemsResponse {NS}>
  <m:ResponseMessages>
    <m:SyncFolderItemsResponseMessage ResponseClass="Success">
      <m:ResponseCode>NoError</m:ResponseCode>
      <m:SyncState>H4sIAAAAAAAEAO29B2AcSZYlJi9tynt</m:SyncState>
      <m:IncludesLastItemInRange>false</m:IncludesLastItemInRange>
      <m:Changes>
        <t:Create>
          <t:Message>
            <t:ItemId Id="AAMkAGI1=" ChangeKey="CQAAABYA"/>
            <t:Subject>Hello</t:Subject>
            <t:DateTimeReceived>2024-05-01T08:30:00Z</t:DateTimeReceived>
            <t:Size>2048</t:Size>
            <t:HasAttachments>false</t:HasAttachments>
            <t:Sender><t:Mailbox><t:Name>Alice</t:Name><t:EmailAddress>alice@example.com</t:EmailAddress></t:Mailbox></t:Sender>
            <t:ConversationTopic>Hello</t:ConversationTopic>
            <t:From><t:Mailbox><t:Name>Alice</t:Name><t:EmailAddress>alice@example.com</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox></t:From>
            <t:InternetMessageId>&lt;abc@example.com&gt;</t:InternetMessageId>
            <t:IsRead>false</t:IsRead>
          </t:Message>
        </t:Create>
        <t:Update>
          <t:Message>
            <t:ItemId Id="AAMkAGI2=" ChangeKey="CQAAABYB"/>
            <t:DateTimeReceived>2024-05-01T09:00:00Z</t:DateTimeReceived>
            <t:IsRead>true</t:IsRead>
          </t:Message>
        </t:Update>
        <t:ReadFlagChange>
          <t:ItemId Id="AAMkAGI3=" ChangeKey="CQAAABYC"/>
          <t:IsRead>true</t:IsRead>
        </t:ReadFlagChange>
        <t:Delete>
          <t:ItemId Id="AAMkAGI4=" ChangeKey="CQAAABYD"/>
        </t:Delete>
      </m:Changes>
    </m:SyncFolderItemsResponseMessage>
  </m:ResponseMessages>
</m:SyncFolderItemsResponse>"""

SYNC_RESP_ERROR = f"""
<m:SyncFolderItemsResponse {NS}>
  <m:ResponseMessages>
    <m:SyncFolderItemsResponseMessage ResponseClass="Error">
      <m:MessageText>The server cannot service this request right now. Try again later.</m:MessageText>
      <m:ResponseCode>ErrorServerBusy</m:ResponseCode>
      <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
      <m:MessageXml>
        <t:Value Name="BackOffMilliseconds">30000</t:Value>
      </m:MessageXml>
    </m:SyncFolderItemsResponseMessage>
  </m:ResponseMessages>
</m:SyncFolderItemsResponse>"""

# (c) FindFolder request (exchangelib 5.6 FindFolder.get_payload(), Exchange >= 2010)
FIND_FOLDER_REQ = f"""
<m:FindFolder {NS} Traversal="Deep">
  <m:FolderShape>
    <t:BaseShape>IdOnly</t:BaseShape>
    <t:AdditionalProperties>
      <t:FieldURI FieldURI="folder:FolderClass"/>
      <t:FieldURI FieldURI="folder:DisplayName"/>
      <t:FieldURI FieldURI="folder:TotalCount"/>
      <t:FieldURI FieldURI="folder:ChildFolderCount"/>
    </t:AdditionalProperties>
  </m:FolderShape>
  <m:IndexedPageFolderView MaxEntriesReturned="100" Offset="0" BasePoint="Beginning"/>
  <m:ParentFolderIds>
    <t:DistinguishedFolderId Id="msgfolderroot"/>
  </m:ParentFolderIds>
</m:FindFolder>"""

# (d) FindFolderResponse
FIND_FOLDER_RESP = f"""
<m:FindFolderResponse {NS}>
  <m:ResponseMessages>
    <m:FindFolderResponseMessage ResponseClass="Success">
      <m:ResponseCode>NoError</m:ResponseCode>
      <m:RootFolder IndexedPagingOffset="2" TotalItemsInView="2" IncludesLastItemInRange="true">
        <t:Folders>
          <t:Folder>
            <t:FolderId Id="AAMkAF1=" ChangeKey="AQAAAB1"/>
            <t:FolderClass>IPF.Note</t:FolderClass>
            <t:DisplayName>Inbox</t:DisplayName>
            <t:TotalCount>42</t:TotalCount>
            <t:ChildFolderCount>1</t:ChildFolderCount>
            <t:UnreadCount>3</t:UnreadCount>
          </t:Folder>
          <t:CalendarFolder>
            <t:FolderId Id="AAMkAF2=" ChangeKey="AgAAAB2"/>
            <t:FolderClass>IPF.Appointment</t:FolderClass>
            <t:DisplayName>Calendar</t:DisplayName>
            <t:TotalCount>0</t:TotalCount>
            <t:ChildFolderCount>0</t:ChildFolderCount>
          </t:CalendarFolder>
        </t:Folders>
      </m:RootFolder>
    </m:FindFolderResponseMessage>
  </m:ResponseMessages>
</m:FindFolderResponse>"""

FIND_FOLDER_RESP_ERROR = f"""
<m:FindFolderResponse {NS}>
  <m:ResponseMessages>
    <m:FindFolderResponseMessage ResponseClass="Error">
      <m:MessageText>You have exceeded the maximum number of objects that can be returned for the find operation. Use paging to reduce the result size and try your request again.</m:MessageText>
      <m:ResponseCode>ErrorExceededFindCountLimit</m:ResponseCode>
      <m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>
    </m:FindFolderResponseMessage>
  </m:ResponseMessages>
</m:FindFolderResponse>"""

# Must be rejected: shows the validator really checks order / ranges / namespaces.
NEGATIVE = {
    "MaxChangesReturned 513 (> 512)": SYNC_REQ_DISTINGUISHED.replace(">512<", ">513<"),
    "SyncScope before MaxChangesReturned": SYNC_REQ_DISTINGUISHED.replace(
        "<m:MaxChangesReturned>512</m:MaxChangesReturned>\n  <m:SyncScope>NormalItems</m:SyncScope>",
        "<m:SyncScope>NormalItems</m:SyncScope>\n  <m:MaxChangesReturned>512</m:MaxChangesReturned>",
    ),
    "t:Message IsRead before From": SYNC_RESP.replace(
        "<t:InternetMessageId>&lt;abc@example.com&gt;</t:InternetMessageId>\n            <t:IsRead>false</t:IsRead>",
        "<t:IsRead>false</t:IsRead>\n            <t:InternetMessageId>&lt;abc@example.com&gt;</t:InternetMessageId>",
    ),
    "t:SyncState instead of m:SyncState": SYNC_RESP.replace(
        "<m:SyncState>H4sIAAAAAAAEAO29B2AcSZYlJi9tynt</m:SyncState>",
        "<t:SyncState>H4sIAAAAAAAEAO29B2AcSZYlJi9tynt</t:SyncState>",
    ),
    "FindFolder Traversal missing": FIND_FOLDER_REQ.replace(' Traversal="Deep"', ""),
    "unknown ResponseCode": FIND_FOLDER_RESP_ERROR.replace(
        "ErrorExceededFindCountLimit", "ErrorNoSuchCode"
    ),
}


def check(name: str, xml: str | etree._Element, expect_ok: bool = True) -> bool:
    elem = etree.fromstring(xml) if isinstance(xml, str) else xml
    ok = bool(SCHEMA.validate(elem))
    status = "valid" if ok else "INVALID"
    good = ok == expect_ok
    print(f"[{'PASS' if good else 'FAIL'}] {name}: {status}")
    if not ok:
        for err in SCHEMA.error_log:
            msg = err.message if len(err.message) < 300 else err.message[:300] + " ..."
            print(f"        line {err.line}: {msg}")
    return good


def exchangelib_payloads() -> dict[str, etree._Element]:
    """Build the real request payloads with exchangelib (offline; server=127.0.0.1, never contacted)."""
    try:
        from exchangelib import (
            DELEGATE,
            Account,
            Build,
            Configuration,
            Credentials,
            EWSTimeZone,
            Version,
        )
        from exchangelib.fields import FieldPath
        from exchangelib.folders import Folder, Inbox, MsgFolderRoot, Root
        from exchangelib.items import Message
        from exchangelib.properties import DistinguishedFolderId
        from exchangelib.services import FindFolder, SyncFolderItems
    except ImportError:
        return {}
    cfg = Configuration(
        server="127.0.0.1",
        credentials=Credentials("u", "p"),
        version=Version(build=Build(15, 1, 2507, 0), api_version="Exchange2016"),
    )
    acc = Account(
        "user@example.com",
        config=cfg,
        autodiscover=False,
        access_type=DELEGATE,
        default_timezone=EWSTimeZone("UTC"),
    )
    root = Root(account=acc)
    inbox = Inbox(root=root, _distinguished_id=DistinguishedFolderId(id="inbox"))
    plain = Folder(root=root, id="AAMkADk=", changekey="AQAAAA==")
    item_fields = [
        FieldPath(field=Message.get_field_by_fieldname(f))
        for f in ("datetime_received", "is_read", "subject", "sender", "message_id")
    ]
    out = {}
    for label, folder, state in (
        ("DistinguishedFolderId", inbox, None),
        ("FolderId", plain, "H4sIAAAA"),
    ):
        out[f"exchangelib SyncFolderItems ({label})"] = SyncFolderItems(account=acc).get_payload(
            folder=folder,
            shape="IdOnly",
            additional_fields=item_fields,
            sync_state=state,
            ignore=None,
            max_changes_returned=512,
            sync_scope="NormalItems",
        )
    msgroot = MsgFolderRoot(root=root, _distinguished_id=DistinguishedFolderId(id="msgfolderroot"))
    folder_fields = [
        FieldPath(field=Folder.get_field_by_fieldname(f))
        for f in ("folder_class", "name", "total_count", "child_folder_count")
    ]
    out["exchangelib FindFolder (Deep, msgfolderroot)"] = FindFolder(account=acc).get_payload(
        folders=[msgroot],
        additional_fields=folder_fields,
        restriction=None,
        shape="IdOnly",
        depth="Deep",
        page_size=100,
        offset=0,
    )
    return out


def main() -> int:
    results = [
        check("(a) SyncFolderItems request, DistinguishedFolderId", SYNC_REQ_DISTINGUISHED),
        check("(a) SyncFolderItems request, FolderId + SyncState", SYNC_REQ_FOLDERID),
        check(
            "(b) SyncFolderItemsResponse Success (Create/Update/ReadFlagChange/Delete)", SYNC_RESP
        ),
        check("(b) SyncFolderItemsResponse Error ErrorServerBusy + MessageXml", SYNC_RESP_ERROR),
        check("(c) FindFolder request Deep / msgfolderroot", FIND_FOLDER_REQ),
        check("(d) FindFolderResponse Success RootFolder/Folders", FIND_FOLDER_RESP),
        check("(d) FindFolderResponse Error ErrorExceededFindCountLimit", FIND_FOLDER_RESP_ERROR),
    ]
    for name, elem in exchangelib_payloads().items():
        print(etree.tostring(elem).decode()[:160] + " ...")
        results.append(check(name, elem))
    for name, xml in NEGATIVE.items():
        results.append(check(f"negative: {name}", xml, expect_ok=False))
    print(f"{sum(results)}/{len(results)} checks behaved as expected")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
