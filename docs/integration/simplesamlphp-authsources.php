<?php
/*
 * SimpleSAMLphp 1.19: config/authsources.php with a saml:SP for Göteborgs Stads Åtkomsttjänst.
 *
 * Replace https://sp.example.org (your SimpleSAMLphp's base URL), the key and certificate
 * paths and https://idp.example.org (the IdP's base URL). Convert the IdP's signed metadata
 * with SimpleSAMLphp's own tool, which checks its signature:
 *   modules/metarefresh/bin/metarefresh.php --certificate=idp-metadata-signer.pem \
 *       -o metadata/ idp-metadata.xml
 * then register https://sp.example.org/simplesaml/module.php/saml/sp/metadata.php/default-sp
 * (the SP's metadata, with the RequestedAttributes below) at the IdP.
 */
$config = [
    'default-sp' => [
        'saml:SP',
        'entityID' => 'https://sp.example.org/simplesaml/module.php/saml/sp/metadata.php/default-sp',
        'idp' => 'https://idp.example.org/saml/metadata',
        // One key pair signs the AuthnRequests and decrypts the encrypted Assertion: its
        // certificate goes into the SP metadata for both uses.
        'privatekey' => '/etc/simplesamlphp/cert/sp.key.pem',
        'certificate' => '/etc/simplesamlphp/cert/sp.crt.pem',
        'sign.authnrequest' => true,
        'sign.logout' => true,
        'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
        'assertion.encryption' => false,
        // The IdP releases what the SP requests in its metadata. Sambi names here; an SP of the
        // Swedish eID Framework asks for urn:oid:1.2.752.29.6.2.1 (employeeHsaId),
        // urn:oid:2.16.840.1.113730.3.1.241 (displayName), urn:oid:2.5.4.42, urn:oid:2.5.4.4.
        'name' => ['sv' => 'Min tjänst', 'en' => 'My service'],
        'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
        'attributes' => [
            'http://sambi.se/attributes/1/employeeHsaId',
            'http://sambi.se/attributes/1/givenName',
            'http://sambi.se/attributes/1/surname',
        ],
        'attributes.required' => ['http://sambi.se/attributes/1/employeeHsaId'],
        // Sambi's level of assurance 3; the IdP answers NoAuthnContext when it cannot meet it.
        'AuthnContextClassRef' => 'http://id.sambi.se/loa/loa3',
        'AuthnContextComparison' => 'exact',
        'NameIDPolicy' => [
            'Format' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
            'AllowCreate' => true,
        ],
    ],
];
